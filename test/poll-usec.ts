/* VLS_POLL_USEC: after activity the worker polls its queue instead of sleeping, so its peers need
 * not wake it (no eventfd write per message). Counted, not timed: the wake-ups each side caused,
 * the batches found by polling, and the adaptive window (the default, auto) left at the end. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { preload, runPair } from './fixtures/differential';
import { exited, tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'pingpong.js');

interface Report {
  transport?: string;
  n?: number;
  stats: { wakeups: number; eventsIn: number; pollHits: number; pollMisses: number; pollWindowUsec: number };
}

async function pingpong(port: number, pollUsec: string | undefined, n = 3000, gapMs = 0): Promise<{ client: Report; server: Report }> {
  const runtime = tmpRuntime();
  try {
    const env: Record<string, string> = { VLS_RUNTIME_DIR: runtime };
    if (pollUsec !== undefined) env.VLS_POLL_USEC = pollUsec;
    const args = (role: string): string[] => (role === 'server' ? ['server', String(port)] : ['client', String(port), String(n), String(gapMs)]);
    const { s, c } = await runPair(fixture, true, args, env);
    if (s.code !== 0 || c.code !== 0) throw new Error(`exit codes: server ${s.code}, client ${c.code}`);
    return { client: c.log as Report, server: s.log as Report };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

t.test('VLS_POLL_USEC=0: the loop sleeps after each message, so each message wakes the peer', async (t) => {
  const { client, server } = await pingpong(22601, '0');
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  const wakeups = client.stats.wakeups + server.stats.wakeups;
  t.ok(wakeups > 3000, `wake-ups ${wakeups} for 3000 round trips (6000 messages)`);
  t.equal(client.stats.pollHits + server.stats.pollHits, 0, 'nothing found by polling');
  t.equal(client.stats.pollWindowUsec, 0, 'no window');
});

t.test('VLS_POLL_USEC=<n>: the peers poll instead: almost no wake-ups, and both processes still exit', async (t) => {
  const { client, server } = await pingpong(22602, '20000');
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  const wakeups = client.stats.wakeups + server.stats.wakeups;
  t.ok(wakeups < 600, `wake-ups ${wakeups} for 3000 round trips (6000 messages)`);
  t.ok(server.stats.eventsIn >= 3000, 'the server saw every message');
  t.equal(client.stats.pollWindowUsec, 20000, 'the window is the one asked for');
});

t.test('auto (the default): steady traffic opens a window that catches messages without wake-ups', async (t) => {
  const { client, server } = await pingpong(22603, undefined);
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  const hits = client.stats.pollHits + server.stats.pollHits;
  const wakeups = client.stats.wakeups + server.stats.wakeups;
  t.ok(hits > 0, `${hits} batches found by polling`);
  t.ok(wakeups < 6000, `wake-ups ${wakeups} for 6000 messages`);
  t.ok(client.stats.pollWindowUsec <= 50, `the window (${client.stats.pollWindowUsec} µs) stays within the 50 µs cap`);
});

t.test('auto: sparse traffic (10 ms apart, past the cap) closes the window: no CPU spent polling', async (t) => {
  const { client } = await pingpong(22604, 'auto', 12, 10);
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  t.equal(client.stats.pollWindowUsec, 0, 'the window shrank to nothing');
  t.ok(client.stats.wakeups >= 6, `the peer was woken for its messages (${client.stats.wakeups} of 12)`);
});

t.test('VLS_POLL_USEC must be auto or an integer from 0 to 1000000', async (t) => {
  const child = spawn(process.execPath, ['--require', preload, '-e', 'require("net").createServer().listen(0, () => process.exit(0))'], {
    env: { ...process.env, VLS_POLL_USEC: 'fast', VLS_STRICT: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const { code } = await exited(child);
  t.not(code, 0, 'refused under VLS_STRICT');
  t.match(err, /VLS_POLL_USEC must be auto or an integer from 0 to 1000000/);
});
