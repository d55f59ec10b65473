/* worker_threads through the preload (test/fixtures/probe.js, probe 'threads'): a server in the
 * main thread and clients in threads, a server and a client in one thread, a thread terminated
 * with an open connection. Compared with plain Node; each thread must be its own worker of the
 * namespace, go cut-through, exit cleanly and leave nothing behind. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runSide } from './fixtures/differential';
import { leftovers, tmpRuntime } from './fixtures/helpers';

const probe = path.join(__dirname, 'fixtures', 'probe.js');

t.test('differential probe threads: worker_threads clients and servers through the layer', async (t) => {
  const runtime = tmpRuntime();
  const env = { VLS_RUNTIME_DIR: runtime };
  const plain = await runSide(probe, false, ['solo', 'threads', '25700'], env);
  const layered = await runSide(probe, true, ['solo', 'threads', '25710'], env);
  t.same([layered.code, layered.signal], [0, null], 'the layered process exited on its own');
  t.same(layered.log, plain.log, 'every thread saw the same events, and exited the same way');
  // nothing stays behind after a thread exits or is terminated (fds, shared-memory mappings,
  // files of the namespace), checked in the process itself after each thread is gone
  const settledChecks = (plain.log as unknown[][]).filter((e) => /^after-.*threads?$/.test(String(e[1])));
  t.equal(settledChecks.length, 3);
  for (const e of settledChecks) t.same(e[2], { fds: true, maps: true, ns: true }, `${String(e[1])}: nothing left`);
  const exits = (layered.log as unknown[][]).filter((e) => /^(client|both|terminated)-thread$/.test(String(e[1])));
  t.match(exits, [
    ['p', 'client-thread', 0, [['connect', true], ['end', true], ['close', false], ['exit', 0]], [['end', 300000], ['close', false]]],
    ['p', 'client-thread', 1, [['connect', true], ['end', true], ['close', false], ['exit', 0]], [['end', 300000], ['close', false]]],
    ['p', 'client-thread', 2, [['connect', true], ['end', true], ['close', false], ['exit', 0]], [['end', 300000], ['close', false]]],
    ['p', 'both-thread', [['connect', true], ['end', true], ['close', false], ['server-closed'], ['exit', 0]]],
    ['p', 'terminated-thread', [['data', 'x'], ['terminated', 1]]],
  ]);

  t.same(
    plain.handles.map(([, c]) => c),
    ['TCP', 'TCP', 'TCP', 'TCP', 'TCP'],
    'plain Node ran on TCP',
  );
  t.same(
    layered.handles,
    [
      ['client', 'SessionHandle'],
      ['client', 'SessionHandle'],
      ['client', 'SessionHandle'],
      ['both', 'SessionHandle'],
      ['to-terminated', 'SessionHandle'],
    ],
    'every connection, between threads or within one, was cut-through',
  );
  // each thread attached as a worker of its own, never the main thread's
  const index = (label: string): string[] =>
    layered.lines.filter((l) => l.startsWith(`INDEX ${label} `)).map((l) => l.split(' ')[2] as string);
  const main = index('main');
  t.match(main, [/^\d+$/], 'the main thread is a worker');
  for (const label of ['client', 'both']) {
    const idx = index(label);
    t.ok(idx.length > 0 && idx.every((i) => /^\d+$/.test(i) && i !== main[0]), `a ${label} thread is a worker of its own (${idx.join(',')} vs ${main[0]})`);
  }
  const peerClose = (r: { lines: string[] }): string[] => r.lines.filter((l) => l.startsWith('PEERCLOSE'));
  t.same(peerClose(plain), ['PEERCLOSE end'], 'plain: a terminated thread\'s connection ends');
  // A terminated thread's worker closes its sessions as the kernel closes a thread's sockets.
  t.same(peerClose(layered), peerClose(plain), 'the peer of a terminated thread sees the same');
  t.same(leftovers(runtime), [], 'the namespace is empty once the process is gone');
  fs.rmSync(runtime, { recursive: true, force: true });
});
