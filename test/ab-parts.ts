/* The pieces of `vls ab` that need no process: the HTTP response framing, command splitting and
 * option checks, and the histogram round trip. */
import t from 'tap';

import { HttpResponseParser } from '../src/ab/http-response';
import { resolveOptions, splitCommand } from '../src/ab/options';
import { decodeHistogram, latencyOf, mergeHistograms, newHistogram, encodeHistogram } from '../src/ab/histogram';

function parse(chunks: (string | Buffer)[], requests = 1): { responses: [number, boolean][]; error?: string } {
  const responses: [number, boolean][] = [];
  const p = new HttpResponseParser((s, k) => {
    responses.push([s, k]);
    if (responses.length < requests) p.expect('GET');
  });
  p.expect('GET');
  try {
    for (const c of chunks) p.feed(Buffer.isBuffer(c) ? c : Buffer.from(c, 'latin1'));
    p.end();
  } catch (e) {
    return { responses, error: (e as Error).message };
  }
  return { responses };
}

t.test('http response framing', async (t) => {
  const cl = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
  t.same(parse([cl]).responses, [[200, true]], 'content-length in one piece');
  const bytes = [...cl].map((c) => c);
  t.same(parse(bytes).responses, [[200, true]], 'content-length one byte at a time');
  const chunked = 'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n';
  t.same(parse([chunked]).responses, [[201, true]], 'chunked with an extension and a trailer');
  t.same(parse([...chunked]).responses, [[201, true]], 'chunked one byte at a time');
  t.same(parse(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n']).responses, [[204, true]], '1xx skipped, 204 has no body');
  t.same(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n']).responses, [[200, false]], 'connection: close');
  t.same(parse(['HTTP/1.0 200 OK\r\n\r\nbody until the end']).responses, [[200, false]], 'HTTP/1.0 body framed by the end');
  t.same(parse([cl, cl], 2).responses, [[200, true], [200, true]], 'two responses in turn');
  t.match(parse([cl + 'extra']).error, /bytes after the end of a response/);
  t.match(parse(['HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort']).error, /ended in the middle of a response/);
  t.match(parse(['SSH-2.0-OpenSSH\r\n\r\n']).error, /not an HTTP\/1\.x status line/);
  t.match(parse(['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n']).error, /conflicting content-length/);
  t.match(parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']).error, /bad chunk size line/);
  t.match(parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n']).error, /unsupported transfer-encoding/);
});

t.test('commands split like a shell, without expansions', async (t) => {
  t.same(splitCommand('node my-server.js 8080'), ['node', 'my-server.js', '8080']);
  t.same(splitCommand(`  node "a b.js" 'c d' e\\ f "x\\"y" $HOME  `), ['node', 'a b.js', 'c d', 'e f', 'x"y', '$HOME']);
  t.same(splitCommand(`sh -c 'exec node s.js'`), ['sh', '-c', 'exec node s.js']);
  t.same(splitCommand(`""`), ['']);
  t.throws(() => splitCommand(`node 'x`), { code: 'ERR_INVALID_ARG_VALUE' });
});

t.test('option checks and defaults', async (t) => {
  const d = resolveOptions({});
  t.match(d, { workload: 'echo', builtin: true, port: 0, host: '127.0.0.1', size: 64, connections: 1, duration: 2, requests: null, warmup: 0.5, rounds: 3, rate: null, placement: 'unpinned' });
  t.match(resolveOptions({ workload: 'bulk' }), { size: 65536 });
  t.match(resolveOptions({ workload: 'http' }), { size: 0, path: '/' });
  t.match(resolveOptions({ requests: 100 }), { duration: null, requests: 100 });
  t.match(resolveOptions({ server: ['node', 's.js'], port: 8080 }), { builtin: false, server: ['node', 's.js'], port: 8080 });
  const bad: [object, string][] = [
    [{ workload: 'x' }, 'ERR_INVALID_ARG_VALUE'],
    [{ workload: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ rounds: 1.5 }, 'ERR_INVALID_ARG_VALUE'],
    [{ duration: 0 }, 'ERR_INVALID_ARG_VALUE'],
    [{ duration: NaN }, 'ERR_INVALID_ARG_VALUE'],
    [{ connections: 0 }, 'ERR_INVALID_ARG_VALUE'],
    [{ size: 0 }, 'ERR_INVALID_ARG_VALUE'],
    [{ rate: -1 }, 'ERR_INVALID_ARG_VALUE'],
    [{ port: '80' }, 'ERR_INVALID_ARG_TYPE'],
    [{ server: '' , port: 1 }, 'ERR_INVALID_ARG_VALUE'],
    [{ server: [1], port: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ host: 'a b' }, 'ERR_INVALID_ARG_VALUE'],
    [{ path: '/a b' }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [o, code] of bad) t.throws(() => resolveOptions(o as never), { code }, JSON.stringify(o));
});

t.test('histograms survive encoding and merge', async (t) => {
  const a = newHistogram();
  const b = newHistogram();
  for (let i = 1; i <= 1000; i++) a.recordValue(i * 1000); // 1..1000 µs in ns
  b.recordValue(5_000_000);
  const m = mergeHistograms([encodeHistogram(a), encodeHistogram(b)]);
  t.equal(m.totalCount, 1001);
  const l = latencyOf(m);
  t.ok(Math.abs(l.p50 - 501) < 1, `p50 ${l.p50}`);
  t.ok(Math.abs(l.max - 5000) < 5, `max ${l.max}`);
  t.equal(decodeHistogram(encodeHistogram(a)).totalCount, 1000);
  t.same(latencyOf(newHistogram()), { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 });
});

// A client histogram that grew for a large warm-up value and was reset before the window is laid
// out for a wider range than its values: merged, its maximum was the lowest value of the top bucket
// (below the round's maximum and below the merged p99.9, which `vls ab` reported).
t.test('the maximum agrees with the percentiles in a round and merged', async (t) => {
  const h = newHistogram();
  h.recordValue(50e9); // 50 s, in the warm-up
  h.reset();
  for (let i = 0; i < 399; i++) h.recordValue(150_000 + i * 100);
  h.recordValue(3_560_000);
  const round = latencyOf(decodeHistogram(encodeHistogram(h)));
  const merged = latencyOf(mergeHistograms([encodeHistogram(h)]));
  for (const [name, l] of [['round', round], ['merged', merged]] as const) {
    t.ok(l.p999 <= l.max, `${name}: p99.9 ${l.p999} <= max ${l.max}`);
    t.ok(Math.abs(l.max - 3560) / 3560 < 0.001, `${name}: max ${l.max} within 0.1% of 3560`);
  }
  t.equal(merged.max, round.max, 'merged and round maxima are the same');
});
