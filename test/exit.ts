/* Differential: a peer process that exits, or is killed with SIGKILL, without closing its socket.
 * The kernel closes the sockets of a process that ends (FIN behind what it sent, or RST when
 * received data was left unread); the layer must give the survivor the same events, bytes and
 * error codes, whether the dead process could run its exit handlers or not. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runPair } from './fixtures/differential';
import { tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'exit-pair.js');

/** What the side that lives on saw, and the transport under the client. */
async function pair(layer: boolean, port: number, mode: string): Promise<{ survivor: unknown; handle: string; killed: string | null }> {
  const runtime = tmpRuntime();
  try {
    const { s, c } = await runPair(fixture, layer, (role) => [role, String(port), mode], { VLS_RUNTIME_DIR: runtime });
    const serverKilled = mode.startsWith('server-');
    return {
      survivor: serverKilled ? c.log : s.log,
      handle: c.handles[0]?.[1] ?? '?',
      killed: serverKilled ? s.signal : c.signal,
    };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

const modes = ['exit', 'natural', 'unread', 'kill', 'kill-unread', 'server-kill', 'server-kill-unread'];
for (const [i, mode] of modes.entries()) {
  const who = mode.startsWith('server-') ? 'a server that is killed' : mode.startsWith('kill') ? 'a client that is killed' : 'a client that exits';
  t.test(`${who} (${mode}) without closing: the other side sees what it sees over TCP`, async (t) => {
    const plain = await pair(false, 22620 + i, mode);
    const layered = await pair(true, 22640 + i, mode);
    t.equal(plain.handle, 'TCP');
    t.equal(layered.handle, 'SessionHandle', 'the layer went cut-through');
    t.equal(layered.killed, plain.killed, `the dead side ended by ${String(plain.killed)}`);
    t.same(layered.survivor, plain.survivor, JSON.stringify(plain.survivor));
  });
}
