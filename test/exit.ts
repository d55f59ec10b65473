/* Differential: a peer process that exits without closing its socket. The kernel closes the
 * sockets of an exiting process (FIN, or RST when received data was left unread); the layer must
 * give the survivor the same events, bytes and error codes. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { exited, tmpRuntime } from './fixtures/helpers';

const fixture = path.join(__dirname, 'fixtures', 'exit-pair.js');
const preload = path.join(__dirname, '..', 'preload', 'index.js');

function run(layer: boolean, args: string[], env: NodeJS.ProcessEnv, onReady?: () => void): Promise<string> {
  const child = spawn(process.execPath, [...(layer ? ['--require', preload] : []), fixture, ...args], {
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
    void exited(child).then(() => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

async function pair(layer: boolean, port: number, mode: string): Promise<{ server: unknown; handle: string }> {
  const runtime = tmpRuntime();
  try {
    const env = { VLS_RUNTIME_DIR: runtime };
    let ready!: () => void;
    const started = new Promise<void>((r) => (ready = r));
    const server = run(layer, ['server', String(port), mode], env, ready);
    await started;
    const cout = await run(layer, ['client', String(port), mode], env);
    const sout = await server;
    const line = sout.split('\n').find((l) => l.startsWith('['));
    const handle = cout.split('\n').find((l) => l.startsWith('HANDLE '))?.slice(7) ?? '?';
    return { server: line ? JSON.parse(line) : sout, handle };
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
