/**
 * Latency histograms: HdrHistogram (hdr-histogram-js) recording nanoseconds with 3 significant
 * digits, so every figure is within 0.1% of the recorded value, far finer than a microsecond.
 * The client encodes its histogram (compressed base64, the HdrHistogram wire format) and the tool
 * decodes and merges them; percentiles always come from the library, never from our own math.
 */
import * as hdr from 'hdr-histogram-js';

import type { AbLatency } from './types';

export type Histogram = hdr.Histogram;

/** An empty histogram for nanosecond values (it grows to any value it is given). */
export function newHistogram(): Histogram {
  return hdr.build({ bitBucketSize: 64, autoResize: true, lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function decodeHistogram(s: string): Histogram {
  return hdr.decodeFromCompressedBase64(s, 64);
}

/** One histogram holding every value of the given encoded ones. */
export function mergeHistograms(encoded: readonly string[]): Histogram {
  const out = newHistogram();
  for (const s of encoded) out.add(decodeHistogram(s));
  return out;
}

const us = (ns: number): number => ns / 1000;

/**
 * The largest value, as the percentiles give values: the highest value equivalent to it (within
 * the 0.1%). The library's own maxValue is not that: it is the exact value for a histogram
 * recorded here, and for a merged one whose input was laid out for a wider range (a client
 * histogram that grew for a large warm-up value and was then reset) the lowest value of its top
 * bucket, which put the merged maximum below its own p99.9 and below the round's maximum.
 */
function maxOf(h: Histogram): number {
  return h.getValueAtPercentile(100);
}

/** The latency figures of a histogram of nanoseconds, in microseconds (all 0 when it is empty). */
export function latencyOf(h: Histogram): AbLatency {
  if (h.totalCount === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return {
    count: h.totalCount,
    min: us(h.minNonZeroValue),
    mean: us(h.mean),
    p50: us(h.getValueAtPercentile(50)),
    p90: us(h.getValueAtPercentile(90)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    max: us(maxOf(h)),
  };
}

/**
 * Latency by percentile for an HdrHistogram-style plot: points evenly spaced in
 * log10(1 / (1 - p)) (0%, ..., 90%, ..., 99%, ..., 99.9%, ...), up to the last percentile the
 * count can resolve, then the maximum (as 100).
 */
export function percentileCurve(h: Histogram, stepsPerDecade = 20): [number, number][] {
  const n = h.totalCount;
  if (n === 0) return [];
  const out: [number, number][] = [];
  const maxDecades = Math.log10(n);
  for (let i = 0; i / stepsPerDecade <= maxDecades; i++) {
    const p = 100 * (1 - Math.pow(10, -i / stepsPerDecade));
    out.push([p, us(h.getValueAtPercentile(p))]);
  }
  out.push([100, us(maxOf(h))]);
  return out;
}
