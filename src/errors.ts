/**
 * The one place where a negative errno from the native core becomes a Node-style error, shaped
 * like the ones `net` makes: `code`, `errno`, `syscall`, and `address`/`port` when known.
 */
import * as util from 'node:util';

/** A Node-style system error. */
export interface VlsSystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  address?: string;
  port?: number;
}

/** The errno name Node would show for a negative errno ('ECONNRESET'), or 'UNKNOWN'. */
export function errnoName(negErrno: number): string {
  try {
    return util.getSystemErrorName(negErrno);
  } catch {
    return 'UNKNOWN';
  }
}

/** Builds the error `net` would build for this errno, e.g. `connect ECONNREFUSED 127.0.0.1:80`. */
export function errnoException(
  negErrno: number,
  syscall: string,
  address?: string,
  port?: number,
): VlsSystemError {
  const code = errnoName(negErrno);
  let detail = '';
  if (address !== undefined) detail = port !== undefined && port > 0 ? ` ${address}:${port}` : ` ${address}`;
  const err = new Error(`${syscall} ${code}${detail}`) as VlsSystemError;
  err.errno = negErrno;
  err.code = code;
  err.syscall = syscall;
  if (address !== undefined) err.address = address;
  if (address !== undefined && port !== undefined && port > 0) err.port = port;
  return err;
}

/** An error of the layer itself, with a stable `ERR_VLS_*` code. */
export class VlsError extends Error {
  readonly code: string;
  constructor(code: `ERR_VLS_${string}`, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'VlsError';
  }
}
