/* Differential: a peer process that exits without closing its socket. The kernel closes the
 * sockets of an exiting process (FIN, or RST when received data was left unread); the layer must
 * give the survivor the same events, bytes and error codes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runPair } from './fixtures/differential';
import { tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'exit-pair.js');

async function pair(layer: boolean, port: number, mode: string): Promise<{ server: unknown; handle: string }> {
  const runtime = tmpRuntime();
  try {
    const { s, c } = await runPair(fixture, layer, (role) => [role, String(port), mode], { VLS_RUNTIME_DIR: runtime });
    return { server: s.log, handle: c.handles[0]?.[1] ?? '?' };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

for (const [i, mode] of ['exit', 'natural', 'unread'].entries()) {
  t.test(`a client that exits (${mode}) without closing: the server sees what it sees over TCP`, async (t) => {
    const plain = await pair(false, 22620 + i, mode);
    const layered = await pair(true, 22630 + i, mode);
    t.equal(plain.handle, 'TCP');
    t.equal(layered.handle, 'SessionHandle', 'the layer went cut-through');
    t.same(layered.server, plain.server, JSON.stringify(plain.server));
  });
}
