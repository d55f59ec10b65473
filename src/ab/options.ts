/**
 * Options of `vls ab`: defaults, checks (Node-style errors that name the option), the command line
 * (`util.parseArgs`, strict) and the help text. runAb() and the CLI share all of it.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { invalidArgType, invalidArgValue, missingOption } from './errors';
import type { AbOptions, AbPlacement, AbResolvedOptions, AbWorkload } from './types';

const WORKLOADS: readonly AbWorkload[] = ['echo', 'http', 'bulk'];
const PLACEMENTS: readonly AbPlacement[] = ['same', 'split', 'unpinned'];
const MAX_SIZE = 64 * 1024 * 1024;

/** The example server that stands in when no `server` is given, per workload (paths under the repo). */
export const BUILTIN_SERVERS: Record<AbWorkload, string> = {
  echo: 'examples/echo-server.js',
  http: 'examples/http-server.js',
  bulk: 'examples/sink-server.js',
};

export const DEFAULT_SIZE: Record<AbWorkload, number> = { echo: 64, http: 0, bulk: 65536 };

/**
 * Splits a command line into argv the way a POSIX shell does for words and quotes ('...', "...",
 * backslash), without any expansion. A command that needs a shell can be given as `sh -c '...'`.
 */
export function splitCommand(cmd: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < cmd.length) {
    const c = cmd[i] as string;
    if (c === "'") {
      const end = cmd.indexOf("'", i + 1);
      if (end < 0) throw invalidArgValue('server', cmd, 'has an unterminated single quote');
      cur += cmd.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= cmd.length) throw invalidArgValue('server', cmd, 'has an unterminated double quote');
        const d = cmd[i] as string;
        if (d === '"') break;
        if (d === '\\' && i + 1 < cmd.length && '"\\$`\n'.includes(cmd[i + 1] as string)) {
          cur += cmd[i + 1];
          i += 2;
        } else {
          cur += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === '\\') {
      if (i + 1 < cmd.length) cur += cmd[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

function num(name: string, v: unknown, opts: { int?: boolean; min: number; max: number; minExclusive?: boolean }): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'a number', v);
  if (!Number.isFinite(v) || (opts.int && !Number.isInteger(v))) {
    throw invalidArgValue(name, v, `must be a finite ${opts.int ? 'integer' : 'number'}`);
  }
  if (opts.minExclusive ? v <= opts.min : v < opts.min) {
    throw invalidArgValue(name, v, `must be ${opts.minExclusive ? '>' : '>='} ${opts.min}`);
  }
  if (v > opts.max) throw invalidArgValue(name, v, `must be <= ${opts.max}`);
  return v;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string') throw invalidArgType(name, `one of ${allowed.join(', ')}`, v);
  if (!(allowed as readonly string[]).includes(v)) throw invalidArgValue(name, v, `must be one of ${allowed.join(', ')}`);
  return v as T;
}

/**
 * Checks the options and fills in the defaults. `port` stays 0 for a built-in server without one
 * (runAb picks a free port); `server` stays empty for a built-in server (runAb fills in the example).
 */
export function resolveOptions(o: AbOptions): AbResolvedOptions {
  if (o === null || typeof o !== 'object') throw invalidArgType('options', 'an object', o);
  const workload = o.workload === undefined ? 'echo' : oneOf('workload', o.workload, WORKLOADS);
  let server: string[] = [];
  if (o.server !== undefined) {
    if (typeof o.server === 'string') server = splitCommand(o.server);
    else if (Array.isArray(o.server) && o.server.every((s) => typeof s === 'string')) server = [...(o.server as string[])];
    else throw invalidArgType('server', 'a string or an array of strings', o.server);
    if (server.length === 0 || server[0] === '') throw invalidArgValue('server', o.server, 'must name a command');
  }
  const builtin = server.length === 0;
  if (!builtin && o.port === undefined) {
    throw missingOption("The option 'port' is required with 'server': the port the server listens on");
  }
  const port = o.port === undefined ? 0 : num('port', o.port, { int: true, min: 1, max: 65535 });
  const host = o.host ?? '127.0.0.1';
  if (typeof host !== 'string') throw invalidArgType('host', 'a string', host);
  if (host === '' || /[\s/]/.test(host)) throw invalidArgValue('host', host, 'must be an address or a host name');
  const size =
    o.size === undefined
      ? DEFAULT_SIZE[workload]
      : num('size', o.size, { int: true, min: workload === 'http' ? 0 : 1, max: MAX_SIZE });
  const connections = o.connections === undefined ? 1 : num('connections', o.connections, { int: true, min: 1, max: 1024 });
  const p = o.path ?? '/';
  if (typeof p !== 'string') throw invalidArgType('path', 'a string', p);
  if (!p.startsWith('/') || /[\s\u0000-\u001f\u007f]/.test(p)) {
    throw invalidArgValue('path', p, 'must start with / and hold no spaces or control characters');
  }
  if (o.duration !== undefined && o.requests !== undefined) {
    throw invalidArgValue('requests', o.requests, "cannot be combined with 'duration'");
  }
  const requests = o.requests === undefined ? null : num('requests', o.requests, { int: true, min: 1, max: 1e9 });
  const duration =
    requests !== null ? null : o.duration === undefined ? 2 : num('duration', o.duration, { min: 0, max: 3600, minExclusive: true });
  const warmup = o.warmup === undefined ? 0.5 : num('warmup', o.warmup, { min: 0, max: 600 });
  const rounds = o.rounds === undefined ? 3 : num('rounds', o.rounds, { int: true, min: 1, max: 100 });
  const rate = o.rate === undefined ? null : num('rate', o.rate, { min: 0, max: 1e7, minExclusive: true });
  if (rate !== null && workload === 'bulk') {
    throw invalidArgValue('rate', rate, 'is for echo and http (bulk streams as fast as the connection takes it)');
  }
  const placement = o.placement === undefined ? 'unpinned' : oneOf('placement', o.placement, PLACEMENTS);
  const startTimeout = o.startTimeout === undefined ? 10 : num('startTimeout', o.startTimeout, { min: 0, max: 600, minExclusive: true });
  const cwd = o.cwd === undefined ? process.cwd() : o.cwd;
  if (typeof cwd !== 'string') throw invalidArgType('cwd', 'a string', cwd);
  return {
    workload,
    server,
    builtin,
    port,
    host,
    size,
    connections,
    path: p,
    duration,
    requests,
    warmup,
    rounds,
    rate,
    placement,
    startTimeout,
    cwd: path.resolve(cwd),
  };
}

/** What the command line asks for besides the run itself. */
export interface AbCliOptions {
  options: AbOptions;
  /** --json <file>, '-' for stdout */
  json: string | undefined;
  html: string | undefined;
  quiet: boolean;
  help: boolean;
}

function cliNumber(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const v = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(v)) throw invalidArgValue(name, raw, 'must be a number');
  return v;
}

/** Parses `vls ab` arguments (after "ab"). Throws Node-style errors (ERR_PARSE_ARGS_*, ERR_INVALID_ARG_VALUE). */
export function parseAbArgs(argv: string[]): AbCliOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      workload: { type: 'string', short: 'w' },
      client: { type: 'string' },
      server: { type: 'string', short: 's' },
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      size: { type: 'string' },
      connections: { type: 'string', short: 'c' },
      path: { type: 'string' },
      duration: { type: 'string', short: 'd' },
      requests: { type: 'string', short: 'n' },
      warmup: { type: 'string' },
      rounds: { type: 'string', short: 'r' },
      rate: { type: 'string' },
      placement: { type: 'string' },
      'start-timeout': { type: 'string' },
      json: { type: 'string' },
      html: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.workload !== undefined && values.client !== undefined && values.workload !== values.client) {
    throw invalidArgValue('client', values.client, `contradicts --workload ${values.workload}`);
  }
  if (values.server !== undefined && positionals.length > 0) {
    throw invalidArgValue('server', positionals.join(' '), 'is given twice (--server and after --)');
  }
  const options: AbOptions = {};
  const workload = values.workload ?? values.client;
  if (workload !== undefined) options.workload = workload as AbWorkload;
  if (values.server !== undefined) options.server = values.server;
  else if (positionals.length > 0) options.server = positionals;
  const numbers: [keyof AbOptions, string | undefined][] = [
    ['port', values.port],
    ['size', values.size],
    ['connections', values.connections],
    ['duration', values.duration],
    ['requests', values.requests],
    ['warmup', values.warmup],
    ['rounds', values.rounds],
    ['rate', values.rate],
    ['startTimeout', values['start-timeout']],
  ];
  for (const [k, raw] of numbers) {
    const v = cliNumber(k, raw);
    if (v !== undefined) (options as Record<string, unknown>)[k] = v;
  }
  if (values.host !== undefined) options.host = values.host;
  if (values.path !== undefined) options.path = values.path;
  if (values.placement !== undefined) options.placement = values.placement as AbPlacement;
  if (values.json === '') throw invalidArgValue('json', '', "must be a file name or '-'");
  if (values.html === '' || values.html === '-') throw invalidArgValue('html', values.html, 'must be a file name');
  return { options, json: values.json, html: values.html, quiet: values.quiet ?? false, help: values.help ?? false };
}

export const AB_HELP = `usage: vls ab [options]                      A/B on the built-in example (echo ping-pong)
       vls ab --server "<command>" --port <n> [options]
       vls ab --port <n> [options] -- <command> [args...]

Runs the same server and client twice per round: A on plain Node (kernel TCP), B with both
started through node-vls (--require preload, one private namespace), so their connections are
cut-through sessions over shared memory. Rounds alternate A B A B so drift hits both.

Server
  -s, --server <cmd>      server command (split like a shell, no expansions); B gets
                          NODE_OPTIONS=--require=<preload> added. Default: the example
                          server for the workload (examples/echo-server.js, http-server.js,
                          sink-server.js)
  -p, --port <n>          port the server listens on (required with --server; default: a
                          free port in 20000-29999 for the example)
      --host <addr>       address to connect to (default 127.0.0.1)
      --start-timeout <s> seconds to wait for the port to accept connections (default 10)

Workload
  -w, --workload <w>      echo | http | bulk (default echo); --client is an alias
                          echo: each connection sends --size bytes and waits for the echo
                          http: keep-alive requests, one outstanding per connection
                          bulk: one-way stream of --size writes; GB/s, write latency
      --size <bytes>      echo message (64), bulk write (65536), http POST body (0: GET)
  -c, --connections <n>   concurrent connections (default 1)
      --path <p>          http request path (default /)
  -d, --duration <s>      measured seconds per side and round (default 2)
  -n, --requests <n>      measured operations per side and round instead of --duration
      --warmup <s>        unmeasured load before each window (default 0.5)
  -r, --rounds <n>        rounds, each A then B (default 3)
      --rate <ops/s>      open loop at this rate over all connections; latency counts from
                          the intended send time (coordinated omission corrected).
                          Default: closed loop
      --placement <p>     same: both on CPU 0; split: server CPU 0, client CPU 1;
                          unpinned (default): no taskset

Output
      --json <file>       result as JSON (schema "node-vls/ab@1"); '-' for stdout
      --html <file>       self-contained HTML report with plots
  -q, --quiet             no table, no progress
  -h, --help              this text

Exit status: 0 done; 1 the run failed (err.code ERR_VLS_AB_*); 2 bad options; 130/143 interrupted.
`;
