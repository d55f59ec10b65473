/**
 * Loads the native addon. Like @parcel/watcher's loader, it fails with a message that says what to
 * do rather than a bare MODULE_NOT_FOUND.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The native addon's surface, as the binding exports it. */
export interface NativeBinding {
  version(): { major: number; minor: number };
  errName(negErrno: number): string;
}

let cached: NativeBinding | undefined;
let loadError: Error | undefined;

/** The package root: the nearest folder above this file that holds binding.gyp (this file runs
 * from src/ under the test runner and from dist/src/ once compiled). */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.join(__dirname, '..', '..');
    dir = up;
  }
}

/** Path of the built addon (build/Release/vls.node at the package root). */
export const addonPath = path.join(packageRoot(), 'build', 'Release', 'vls.node');

/** Returns the addon, or throws an Error with code ERR_VLS_ADDON_NOT_BUILT. */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (loadError) throw loadError;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(addonPath) as NativeBinding;
    return cached;
  } catch (cause) {
    const err = new Error(
      `node-vls: the native addon could not be loaded from ${addonPath} ` +
        `(${(cause as Error).message}). Run \`npm install\` (or \`npx node-gyp rebuild\`) in the ` +
        `node-vls package to build it.`,
      { cause },
    ) as Error & { code: string };
    err.code = 'ERR_VLS_ADDON_NOT_BUILT';
    loadError = err;
    throw err;
  }
}
