import t from 'tap';
import { loadNative } from '../src/native';

t.test('the addon loads and maps errnos to Node codes', async (t) => {
  const b = loadNative();
  t.match(b.version(), { major: Number, minor: Number });
  t.equal(b.errName(-104), 'ECONNRESET');
  t.equal(b.errName(-111), 'ECONNREFUSED');
  t.equal(b.errName(-9999), 'UNKNOWN');
});
