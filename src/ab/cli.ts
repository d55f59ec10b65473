/**
 * `vls ab ...`: options -> runAb() -> table / JSON / HTML. Progress goes to stderr: a live line
 * when stderr is a terminal, one plain line per finished side otherwise. Ctrl-C or SIGTERM
 * aborts the run (children stopped, nothing left behind); a second one kills them and leaves.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AB_HELP, parseAbArgs } from './options';
import { killAllSync } from './proc';
import { fmt, formatTable, renderHtml, roundLine } from './report';
import { runAb } from './run';
import type { AbProgress, AbResult } from './types';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: unknown })?.code === undefined ? undefined : String((e as { code: unknown }).code);
}

function checkWritable(opt: string, file: string): void {
  const dir = path.dirname(path.resolve(file));
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    const err = new RangeError(`The option '${opt}' names a file in ${dir}, which does not exist or is not writable`) as RangeError & {
      code: string;
    };
    err.code = 'ERR_INVALID_ARG_VALUE';
    throw err;
  }
}

/** "1.2 / 2 s" */
function secs(e: AbProgress): string {
  const el = (e.elapsed ?? 0).toFixed(1);
  return e.total !== undefined ? `${el} / ${e.total} s` : `${el} s`;
}

/** Runs `vls ab` with the arguments after "ab"; resolves to the exit code. */
export async function abMain(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const say = (s: string): void => void io.stderr.write(s);
  let cli;
  try {
    cli = parseAbArgs(argv);
    if (cli.json !== undefined && cli.json !== '-') checkWritable('json', cli.json);
    if (cli.html !== undefined) checkWritable('html', cli.html);
  } catch (e) {
    say(`vls ab: ${(e as Error).message} (${codeOf(e) ?? 'ERR_INVALID_ARG_VALUE'})\nsee: vls ab --help\n`);
    return 2;
  }
  if (cli.help) {
    io.stdout.write(AB_HELP);
    return 0;
  }
  const tty = (io.stderr as NodeJS.WriteStream).isTTY === true;
  const showProgress = !cli.quiet;
  let live = false;
  const onProgress = (e: AbProgress): void => {
    if (!showProgress) return;
    if (tty) {
      let what: string = e.phase;
      if (e.phase === 'server') what = 'starting the server';
      else if (e.phase === 'client') what = 'starting the client';
      else if (e.phase === 'warmup') what = `warming up ${secs(e)}`;
      else if (e.phase === 'measure') what = `measuring ${secs(e)}, ${fmt(e.ops ?? 0)} ops`;
      else if (e.phase === 'drain') what = 'stopping';
      if (e.phase === 'done' && e.result) {
        say(`\r\x1b[2K${roundLine(e.result, e.rounds, unit)}\n`);
        live = false;
        return;
      }
      say(`\r\x1b[2Kround ${e.round}/${e.rounds} ${e.side === 'A' ? 'A (plain)' : 'B (vls)'}: ${what}`);
      live = true;
    } else if (e.phase === 'done' && e.result) {
      say(`${roundLine(e.result, e.rounds, unit)}\n`);
    }
  };
  const unit = cli.options.workload === 'bulk' ? 'GB/s' : cli.options.workload === 'http' ? 'req/s' : 'msg/s';
  const ac = new AbortController();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      killAllSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    interrupted = sig;
    ac.abort(Object.assign(new Error(`interrupted by ${sig}`), { name: 'AbortError', code: 'ABORT_ERR' }));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let result: AbResult;
  try {
    result = await runAb({ ...cli.options, signal: ac.signal, onProgress });
  } catch (e) {
    if (live) say('\r\x1b[2K');
    if (interrupted) {
      say(`vls ab: interrupted by ${interrupted}; every process it started is stopped\n`);
      return interrupted === 'SIGINT' ? 130 : 143;
    }
    const code = codeOf(e);
    const usage = code !== undefined && !code.startsWith('ERR_VLS_');
    say(`vls ab: ${usage ? '' : 'error: '}${(e as Error).message} (${code ?? 'ERR_VLS_AB_FAILED'})\n`);
    if (usage) say('see: vls ab --help\n');
    else if (!code) say(`${(e as Error).stack ?? ''}\n`);
    return usage ? 2 : 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  if (live) say('\r\x1b[2K');
  const json = JSON.stringify(result, null, 2) + '\n';
  if (cli.json === '-') io.stdout.write(json);
  else if (cli.json !== undefined) fs.writeFileSync(cli.json, json);
  if (cli.html !== undefined) fs.writeFileSync(cli.html, renderHtml(result));
  if (!cli.quiet) {
    const table = formatTable(result);
    if (cli.json === '-') say(table);
    else io.stdout.write(table);
    if (cli.json !== undefined && cli.json !== '-') say(`JSON: ${cli.json}\n`);
    if (cli.html !== undefined) say(`HTML: ${cli.html}\n`);
  }
  return 0;
}
