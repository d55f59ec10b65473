/**
 * What the tool and its load generator (src/ab/client.ts, a separate Node process) say to each
 * other over the child_process IPC channel (a pipe: never intercepted by the layer).
 *
 *   tool -> client   argv[2]: ClientConfig as JSON; then { t: 'go' } once the server accepts
 *   client -> tool   connected -> mark start -> progress... -> mark end -> result  (then exits 0)
 *                    or failed (then exits 1)
 */
import type { AbResolvedOptions } from './types';

/** What the load generator needs of the run's options. */
export type ClientConfig = Pick<
  AbResolvedOptions,
  'workload' | 'host' | 'port' | 'size' | 'connections' | 'path' | 'duration' | 'requests' | 'warmup' | 'rate'
>;

/** What the load generator reports for its window. */
export interface ClientResult {
  histogram: string;
  ops: number;
  bytes: number;
  seconds: number;
  cpuUs: number;
  handles: Record<string, number>;
  status: Record<string, number>;
  reconnects: number;
  /** When nothing completed in the window: the state of each connection at its end. */
  diag: string[];
  /** Operations still outstanding 2 s (or twice the slowest) after the window (recorded with their wait so far). */
  unfinished: number;
}

export type ToolMessage = { t: 'go' };

export type ClientMessage =
  | { t: 'connected'; handles: Record<string, number> }
  | { t: 'mark'; phase: 'start' | 'end' }
  | { t: 'progress'; phase: 'warmup' | 'measure'; elapsed: number; ops: number }
  | ({ t: 'result' } & ClientResult)
  | { t: 'failed'; code: string; message: string };
