/** The figures that get a B/A ratio, and how to read each from a round or a side's merged figures. */
import type { AbCpu, AbLatency, AbMetric } from './types';

export const METRICS: readonly AbMetric[] = ['p50', 'p90', 'p99', 'p999', 'max', 'throughput', 'clientCpuPerOp', 'serverCpuPerOp'];

/** The value of a metric in a side's merged figures or one of its rounds. */
export function metricOf(x: { latency: AbLatency; throughput: number; cpu: AbCpu }, m: AbMetric): number {
  switch (m) {
    case 'throughput':
      return x.throughput;
    case 'clientCpuPerOp':
      return x.cpu.clientPerOp;
    case 'serverCpuPerOp':
      return x.cpu.serverPerOp;
    default:
      return x.latency[m];
  }
}
