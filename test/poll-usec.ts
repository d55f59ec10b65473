/* VLS_POLL_USEC: after activity the worker polls its queue instead of sleeping, so its peers need
 * not wake it (no eventfd write per message). Counted, not timed: the wake-ups each side caused. */
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
  stats: { wakeups: number; eventsIn: number };
}

async function pingpong(port: number, pollUsec: string): Promise<{ client: Report; server: Report }> {
  const runtime = tmpRuntime();
  try {
    const env = { VLS_RUNTIME_DIR: runtime, VLS_POLL_USEC: pollUsec };
    const { s, c } = await runPair(fixture, true, (role) => (role === 'server' ? ['server', String(port)] : ['client', String(port), '3000']), env);
    if (s.code !== 0 || c.code !== 0) throw new Error(`exit codes: server ${s.code}, client ${c.code}`);
    return { client: c.log as Report, server: s.log as Report };
  } finally {
    fs.rmSync(runtime, { recursive: true, force: true });
  }
}

t.test('without VLS_POLL_USEC each message wakes the sleeping peer', async (t) => {
  const { client, server } = await pingpong(22601, '');
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  const wakeups = client.stats.wakeups + server.stats.wakeups;
  t.ok(wakeups > 3000, `wake-ups ${wakeups} for 3000 round trips (6000 messages)`);
});

t.test('with VLS_POLL_USEC the peers poll instead: almost no wake-ups, and both processes still exit', async (t) => {
  const { client, server } = await pingpong(22602, '20000');
  t.equal(client.transport, 'SessionHandle', 'cut-through');
  const wakeups = client.stats.wakeups + server.stats.wakeups;
  t.ok(wakeups < 600, `wake-ups ${wakeups} for 3000 round trips (6000 messages)`);
  t.ok(server.stats.eventsIn >= 3000, 'the server saw every message');
});

t.test('VLS_POLL_USEC must be an integer from 0 to 1000000', async (t) => {
  const child = spawn(process.execPath, ['--require', preload, '-e', 'require("net").createServer().listen(0, () => process.exit(0))'], {
    env: { ...process.env, VLS_POLL_USEC: 'fast', VLS_STRICT: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const { code } = await exited(child);
  t.not(code, 0, 'refused under VLS_STRICT');
  t.match(err, /VLS_POLL_USEC must be an integer from 0 to 1000000/);
});
