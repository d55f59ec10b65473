/* Differential: data on two connections that arrive together (in one wake-up of the layer's
 * worker, in one epoll round of the kernel's), and the handlers throw. Node reports
 * the exception as uncaught and still delivers the other connection's data; so must the layer,
 * whose events of one wake-up reach JS together. (Which of the two sockets is called first is the
 * kernel's or the queue's order: the logs are compared as sets.) */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runPair } from './fixtures/differential';
import { tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'together.js');

async function pair(layer: boolean, port: number, mode: string): Promise<{ log: string[]; handles: string[] }> {
  const runtime = tmpRuntime();
  try {
    const { s, c } = await runPair(fixture, layer, (role) => [role, String(port), mode], { VLS_RUNTIME_DIR: runtime });
    return { log: [...(s.log as string[])].sort(), handles: c.handles.map((h) => h[1]) };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

for (const [i, mode] of ['plain', 'throw'].entries()) {
  t.test(`data on two connections at once (${mode}): every handler runs, as over TCP`, async (t) => {
    const plain = await pair(false, 22640 + i, mode);
    const layered = await pair(true, 22645 + i, mode);
    t.same(plain.handles, ['TCP', 'TCP']);
    t.same(layered.handles, ['SessionHandle', 'SessionHandle'], 'the layer went cut-through');
    t.ok(plain.log.includes('data:c2:B') && plain.log.includes('data:c1:A'), `plain Node got both: ${plain.log.join(' ')}`);
    t.same(layered.log, plain.log, 'the layer: the same data and the same uncaught exception');
  });
}
