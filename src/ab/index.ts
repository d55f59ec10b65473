/** `vls ab` as a library: runAb() and the shapes it takes and returns; the report renderers. */
export { runAb, packageRoot } from './run';
export { resolveOptions, splitCommand, parseAbArgs, AB_HELP } from './options';
export { AbError, type AbErrorCode } from './errors';
export { formatTable, renderHtml, describe } from './report';
export { METRICS, metricOf } from './metrics';
export { decodeHistogram, mergeHistograms, latencyOf } from './histogram';
export type * from './types';
