/* Differential probes of the net API (test/fixtures/probe.js): listen variants and EADDRINUSE,
 * every state getter through a connection's life, local address/port and lookup options, a socket
 * reused after close, timeouts, connection counts and server.close(), unref(), connects abandoned
 * before they are made, a published endpoint whose listener is gone. Each runs on plain
 * Node and through the layer, in one process and across two where that makes sense; the logs must
 * be identical, plain Node must run on TCP and the layer on sessions. */
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runPair, runSide, type SideRun } from './fixtures/differential';
import { tmpRuntime } from './fixtures/helpers';

const probe = path.join(__dirname, 'fixtures', 'probe.js');

/** The transport the layer must give a connection of the 'local' probe: 'localhost' reaches the
 * IPv4 listener cut-through only where it resolves to 127.0.0.1 first (where ::1 comes first, net
 * tries ::1 first, and the layer leaves that to the kernel). */
let localhostIsV4 = true;
function layerClass(label: string): string {
  if (/^(localhost|default-host)/.test(label) && !localhostIsV4) return 'TCP';
  // the 'stale' probe: a published endpoint whose listener is gone; the kernel carries these
  if (label.startsWith('fallback')) return 'TCP';
  return 'SessionHandle';
}

function checkHandles(t: tap.Test, plain: SideRun[], layered: SideRun[]): void {
  const p = plain.flatMap((r) => r.handles);
  const l = layered.flatMap((r) => r.handles);
  t.ok(p.length > 0, 'connections were made');
  t.same(
    l.map(([label]) => label),
    p.map(([label]) => label),
    'the same connections were made',
  );
  t.same(
    p.map(([, c]) => c),
    p.map(() => 'TCP'),
    'plain Node ran on TCP',
  );
  t.same(
    l.map(([, c]) => c),
    l.map(([label]) => layerClass(label)),
    'the layer ran on sessions',
  );
}

type Mode = 'solo' | 'both' | 'pair';

async function run(name: string, mode: Mode, layer: boolean, port: number, runtime: string, extra: NodeJS.ProcessEnv = {}): Promise<{ log: unknown; runs: SideRun[] }> {
  const env = { VLS_RUNTIME_DIR: runtime, ...extra };
  if (mode !== 'pair') {
    const r = await runSide(probe, layer, [mode, name, String(port)], env);
    return { log: r.log, runs: [r] };
  }
  const { s, c } = await runPair(probe, layer, (role) => [role, name, String(port)], env);
  return { log: { s: s.log, c: c.log }, runs: [s, c] };
}

/** Each case gets its own block of ports: plain at base, the layer at base + 10. */
const cases: [string, Mode, number][] = [
  ['listen', 'solo', 25000],
  ['busy', 'pair', 25020],
  ['states', 'both', 25040],
  ['states', 'pair', 25060],
  ['local', 'both', 25080],
  ['local', 'pair', 25100],
  ['reuse', 'both', 25120],
  ['reuse', 'pair', 25140],
  ['idle', 'both', 25160],
  ['counts', 'both', 25200],
  ['counts', 'pair', 25220],
  ['abandon', 'both', 25300],
  ['abandon', 'pair', 25320],
  ['stale', 'pair', 25340],
];

t.before(async () => {
  const first = await dns.promises.lookup('localhost', { all: true, hints: dns.ADDRCONFIG }).catch(() => []);
  localhostIsV4 = first[0]?.family === 4;
});

for (const [name, mode, base] of cases) {
  t.test(`differential probe ${name} (${mode === 'pair' ? 'two processes' : 'one process'})`, async (t) => {
    const runtime = tmpRuntime();
    // plain and layered at the same time (their own ports); the timer probe one after the other
    const [plain, layered] =
      name === 'idle'
        ? [await run(name, mode, false, base, runtime), await run(name, mode, true, base + 10, runtime)]
        : await Promise.all([run(name, mode, false, base, runtime), run(name, mode, true, base + 10, runtime)]);
    checkHandles(t, plain.runs, layered.runs);
    t.same(layered.log, plain.log, 'the application saw the same events, values and errors');
    fs.rmSync(runtime, { recursive: true, force: true });
  });
}

// A client whose only socket is unref()d: the process exits, as on plain Node. unref() before
// the connection is made, once it is made, and unref() then ref() (the process then stays).
for (const [i, mode] of ['early', 'connect', 'reref'].entries()) {
  t.test(`differential probe unref (${mode})`, async (t) => {
    const runtime = tmpRuntime();
    const base = 25240 + i * 20; // 25240..25299
    const [plain, layered] = await Promise.all([
      run('unref', 'pair', false, base, runtime, { PROBE_MODE: mode }),
      run('unref', 'pair', true, base + 10, runtime, { PROBE_MODE: mode }),
    ]);
    checkHandles(t, plain.runs, layered.runs);
    const [ps, pc] = plain.runs as [SideRun, SideRun];
    const [ls, lc] = layered.runs as [SideRun, SideRun];
    t.same([lc.code, lc.signal], [pc.code, pc.signal], 'the client exited the same way');
    t.same(lc.log, pc.log, 'the client saw the same events before it exited');
    // unref()d: the process exits with the connection open; unref() then ref(): it stays until
    // the connection is over
    t.match(pc.log, mode === 'reref' ? [['c', 'connect'], ['c', 'unref'], ['c', 'end'], ['c', 'close'], ['c', 'exit', 0]] : [['c'], ['c'], ['c', 'exit', 0]]);
    if (mode === 'reref') {
      t.same(ls.log, ps.log, 'the server saw the same events');
    } else {
      // The client process exits with its connection open: the kernel closes it with a FIN, and
      // so does the layer (a worker that leaves closes its sessions first).
      t.same(ls.log, ps.log, 'the server saw the same events');
      t.match(ps.log, [['s', 'data', 'x'], ['s', 'end'], ['s', 'close']]);
    }
    fs.rmSync(runtime, { recursive: true, force: true });
  });
}
