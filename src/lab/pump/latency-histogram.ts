import { type Histogram, build, decodeFromCompressedBase64, encodeIntoCompressedBase64 } from 'hdr-histogram-js';

/** Largest latency recorded, in ns (10 s); larger samples are clamped to it. */
export const LATENCY_MAX_NS = 10_000_000_000;

/** Latency percentiles in microseconds, read from an HDR histogram. */
export interface LatencyPercentiles {
  /** Samples recorded. */
  samples: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/**
 * An HDR histogram of latencies in nanoseconds (3 significant digits,
 * 1 ns .. 10 s). Its counts array is made once at a fixed size
 * (`autoResize: false`), so recording a value never allocates.
 */
export function newLatencyHistogram(): Histogram {
  return build({ bitBucketSize: 32, autoResize: false, lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_MAX_NS, numberOfSignificantValueDigits: 3 });
}

/** Record `ns`, clamped into the histogram's range (no allocation). */
export function recordLatencyNs(h: Histogram, ns: number): void {
  h.recordValue(ns < 1 ? 1 : ns > LATENCY_MAX_NS ? LATENCY_MAX_NS : Math.round(ns));
}

/** A histogram as HdrHistogram's compressed base64 form, to post to another thread. */
export function encodeHistogram(h: Histogram): string {
  return encodeIntoCompressedBase64(h);
}

/** Merge histograms sent between threads (HdrHistogram's compressed base64 form) into one. */
export function mergeEncodedHistograms(encoded: readonly string[]): Histogram {
  const total = newLatencyHistogram();
  for (const e of encoded) {
    const h = decodeFromCompressedBase64(e);
    total.add(h);
    h.destroy();
  }
  return total;
}

/** p50 / p99 / p99.9 / max in microseconds (NaN when empty). */
export function latencyPercentiles(h: Histogram): LatencyPercentiles {
  const us = (ns: number): number => (h.totalCount === 0 ? Number.NaN : ns / 1000);
  return {
    samples: h.totalCount,
    p50: us(h.getValueAtPercentile(50)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    // The highest recorded value as the percentiles report values (highest equivalent), so p99.9 <= max.
    max: us(h.getValueAtPercentile(100)),
  };
}
