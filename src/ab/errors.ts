/**
 * Errors of `vls ab`. Failures of the run carry stable `ERR_VLS_AB_*` codes; bad options carry
 * Node's own `ERR_INVALID_ARG_VALUE` / `ERR_INVALID_ARG_TYPE` / `ERR_MISSING_OPTION`, like
 * `util.parseArgs` and the core modules do, so callers can tell "fix the command" from "the run
 * failed".
 */
import { VlsError } from '../errors';

/** Codes of failures during a run. */
export type AbErrorCode =
  | 'ERR_VLS_AB_SERVER_EXITED' // the server exited before its port accepted connections
  | 'ERR_VLS_AB_SERVER_TIMEOUT' // the port never accepted connections within the start timeout
  | 'ERR_VLS_AB_SERVER_DIED' // the server exited while the client was running
  | 'ERR_VLS_AB_PORT_IN_USE' // something already listens on (or holds) the port before we start
  | 'ERR_VLS_AB_CLIENT_FAILED' // the load generator failed (connection error, bad response, crash)
  | 'ERR_VLS_AB_TIMEOUT' // a round did not finish in time
  | 'ERR_VLS_AB_PLACEMENT'; // the CPU placement cannot be honoured here (taskset, CPUs)

/** A failed A/B run. `detail` holds the tail of the process output that explains it, if any. */
export class AbError extends VlsError {
  readonly detail: string | undefined;
  constructor(code: AbErrorCode, message: string, detail?: string, options?: { cause?: unknown }) {
    super(code, detail ? `${message}\n${indent(detail)}` : message, options);
    this.name = 'AbError';
    this.detail = detail;
  }
}

function indent(text: string): string {
  return text
    .replace(/\s+$/, '')
    .split('\n')
    .map((l) => `  | ${l}`)
    .join('\n');
}

/** Node-style error for a bad option value (`ERR_INVALID_ARG_VALUE`, a RangeError). */
export function invalidArgValue(name: string, value: unknown, reason: string): RangeError & { code: string } {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  const err = new RangeError(`The option '${name}' ${reason}. Received ${shown}`) as RangeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** Node-style error for an option of the wrong type (`ERR_INVALID_ARG_TYPE`, a TypeError). */
export function invalidArgType(name: string, expected: string, value: unknown): TypeError & { code: string } {
  const err = new TypeError(
    `The option '${name}' must be ${expected}. Received ${value === null ? 'null' : typeof value}`,
  ) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** Node-style error for an option that must be given (`ERR_MISSING_OPTION`, a TypeError). */
export function missingOption(message: string): TypeError & { code: string } {
  const err = new TypeError(message) as TypeError & { code: string };
  err.code = 'ERR_MISSING_OPTION';
  return err;
}
