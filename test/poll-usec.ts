/* VLS_POLL_USEC: after activity the worker polls its queue instead of sleeping, so its peers need
 * not wake it (no eventfd write per message). Counted, not timed: the wake-ups each side caused. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { exited, tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'pingpong.js');
const preload = path.join(__dirname, '..', 'preload', 'index.js');

interface Report {
  transport?: string;
  n?: number;
  stats: { wakeups: number; eventsIn: number };
}

function run(args: string[], env: NodeJS.ProcessEnv, onReady?: () => void): Promise<Report> {
  const child = spawn(process.execPath, ['--require', preload, fixture, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} timed out: ${out}`));
    }, 30000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (onReady && out.includes('ready\n')) {
        const cb = onReady;
        onReady = undefined;
        cb();
      }
    });
    void exited(child).then(({ code }) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) reject(new Error(`${args.join(' ')} exited ${code}: ${out}`));
      else resolve(JSON.parse(line) as Report);
    });
  });
}

async function pingpong(port: number, pollUsec: string): Promise<{ client: Report; server: Report }> {
  const runtime = tmpRuntime();
  try {
    const env = { VLS_RUNTIME_DIR: runtime, VLS_POLL_USEC: pollUsec };
    let ready!: () => void;
    const started = new Promise<void>((r) => (ready = r));
    const server = run(['server', String(port)], env, ready);
    await started;
    const client = await run(['client', String(port), '3000'], env);
    return { client, server: await server };
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
