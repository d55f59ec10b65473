import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';

import { exited, startFixture, tmpRuntime } from './fixtures/helpers';

const bin = path.join(__dirname, '..', 'bin', 'vls.js');

t.test('vls stat lists attached workers and their endpoints', async (t) => {
  const runtime = tmpRuntime();
  const { child, line } = await startFixture('echo-server.js', ['41101'], { VLS_RUNTIME_DIR: runtime });
  const r = spawnSync(process.execPath, [bin, 'stat', '--json'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.equal(r.status, 0);
  const report = JSON.parse(r.stdout.toString());
  const index = Number(line.split(' ')[1]);
  t.match(report, {
    namespace: 'default',
    workers: [{ index, alive: true }],
    endpoints: [{ proto: 'tcp', address: '127.0.0.1', port: 41101, worker: index, pid: child.pid }],
  });
  const text = spawnSync(process.execPath, [bin, 'stat'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } });
  t.match(text.stdout.toString(), /tcp 127\.0\.0\.1:41101\s+worker \d+/);
  child.kill('SIGKILL');
  await exited(child);
  const after = JSON.parse(
    spawnSync(process.execPath, [bin, 'stat', '--json'], { env: { ...process.env, VLS_RUNTIME_DIR: runtime } }).stdout.toString(),
  );
  t.same(after.endpoints, [], 'a killed worker\'s endpoint is recognised as stale and removed');
  t.match(after.workers, [{ index, alive: false }], 'its socket shows as stale');
  const bad = spawnSync(process.execPath, [bin, 'frobnicate']);
  t.equal(bad.status, 2);
  t.match(bad.stderr.toString(), /usage: vls stat/);
  fs.rmSync(runtime, { recursive: true, force: true });
});
