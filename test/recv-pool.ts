/* Bulk reads through the layer land in blocks of its receive pool, handed to the application as
 * Buffers and reused once V8 frees them. The claims: the receiver gets the same bytes and the
 * same kind of chunks as over TCP; a chunk the application keeps keeps its bytes while the stream
 * goes on (its block is not reused while the Buffer lives, garbage collections included); and a
 * process whose reads have stopped gives the pool's blocks back. Real processes on both ends. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { runPair } from './fixtures/differential';
import { tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'bulk-keep.js');

interface Result {
  transport: string;
  bytes: number;
  chunks: number;
  buffers: boolean;
  kept: number;
  keptOk: boolean;
  stats: { recvPoolTakes: number; recvPoolFree: number } | null;
}

async function stream(layer: boolean, port: number, mib: number, keepMib: number): Promise<{ r: Result; idle: Result['stats'] }> {
  const runtime = tmpRuntime();
  try {
    const args = (role: string): string[] => (role === 'server' ? ['server', String(port), String(mib), String(keepMib)] : ['client', String(port), String(mib)]);
    const { s, c } = await runPair(fixture, layer, args, { VLS_RUNTIME_DIR: runtime });
    if (s.code !== 0 || c.code !== 0) throw new Error(`exit codes: server ${s.code}, client ${c.code}`);
    const idleLine = s.lines.find((l) => l.startsWith('{"idle"'));
    if (!idleLine) throw new Error(`no idle report: ${s.lines.join(' | ')}`);
    return { r: s.log as Result, idle: (JSON.parse(idleLine) as { idle: Result['stats'] }).idle };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

t.test('a bulk stream: kept chunks keep their bytes through later reads and GCs, as over TCP', async (t) => {
  const mib = 192;
  const plain = await stream(false, 22611, mib, 24);
  const layer = await stream(true, 22612, mib, 24);
  t.equal(plain.r.transport, 'TCP');
  t.equal(layer.r.transport, 'SessionHandle', 'the layer went cut-through');
  t.equal(layer.r.bytes, plain.r.bytes, 'every byte came');
  t.equal(layer.r.bytes, mib * 1024 * 1024);
  t.equal(layer.r.buffers, true, 'every chunk is a Buffer');
  t.equal(plain.r.keptOk, true, 'TCP: the kept chunks hold the bytes sent');
  t.equal(layer.r.keptOk, true, 'layer: the kept chunks hold the bytes sent');
  t.ok(layer.r.kept > 0, `${layer.r.kept} chunks kept`);
  const st = layer.r.stats;
  t.ok(st && st.recvPoolTakes >= layer.r.chunks - layer.r.kept, `bulk reads came from the pool (${st?.recvPoolTakes} blocks taken, ${layer.r.chunks} chunks)`);
  t.equal(layer.idle?.recvPoolFree, 0, 'once reads stopped the pool gave its blocks back');
});
