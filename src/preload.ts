/**
 * What `--require node-vls/preload` runs: attach this thread to its namespace and patch `net`.
 * If the layer cannot start (addon not built, namespace directory unusable), the application runs
 * on the kernel and one warning says why; VLS_STRICT=1 makes that an error. VLS_DISABLE=1 leaves
 * Node untouched.
 */
import { readConfig, strictFromEnv } from './config';
import { installNetPatch } from './net-patch';
import { namespaceDir, namespaceRoot } from './namespace';
import { attach } from './worker';

// Per thread (globalThis is per thread), and shared by every copy of node-vls that a process may
// load (two installs, or a preload given twice): one worker, one patch.
const kStarted = Symbol.for('node-vls.started');
type G = typeof globalThis & { [kStarted]?: boolean };

/** Start the layer once per thread; returns whether it is active. */
export function start(env: NodeJS.ProcessEnv = process.env): boolean {
  const g = globalThis as G;
  if (g[kStarted]) return true;
  const strict = strictFromEnv(env);
  try {
    const cfg = readConfig(env);
    if (cfg.disabled) return false;
    // Check the namespace directory now, so a bad one is reported at startup; attach later.
    namespaceDir(namespaceRoot(cfg.runtimeDir, env), cfg.namespace);
    let warned = false;
    installNetPatch(() => {
      try {
        return attach(env);
      } catch (e) {
        if (cfg.strict) throw e;
        if (!warned) {
          warned = true;
          warn(e as Error);
        }
        return undefined;
      }
    }, cfg.strict);
    g[kStarted] = true;
    return true;
  } catch (e) {
    if (strict) throw e;
    warn(e as Error);
    return false;
  }
}

function warn(e: Error): void {
  process.emitWarning(`node-vls is not active, the application uses the kernel: ${e.message}`, { code: 'VLS_INACTIVE' });
}
