/**
 * What `--require node-vls/preload` runs: attach this thread to its namespace and patch `net`.
 * If the layer cannot start (addon not built, namespace directory unusable), the application runs
 * on the kernel and one warning says why; VLS_STRICT=1 makes that an error. VLS_DISABLE=1 leaves
 * Node untouched.
 */
import { readConfig } from './config';
import { installNetPatch } from './net-patch';
import { attach } from './worker';

let started = false;

/** Start the layer once per thread; returns whether it is active. */
export function start(env: NodeJS.ProcessEnv = process.env): boolean {
  if (started) return true;
  let strict = false;
  try {
    const cfg = readConfig(env);
    strict = cfg.strict;
    if (cfg.disabled) return false;
    const w = attach(env);
    installNetPatch(w, cfg.strict);
    started = true;
    return true;
  } catch (e) {
    if (strict) throw e;
    process.emitWarning(`node-vls is not active, the application uses the kernel: ${(e as Error).message}`, {
      code: 'VLS_INACTIVE',
    });
    return false;
  }
}
