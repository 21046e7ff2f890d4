/**
 * Byte accounting for streams that may be cut by a fault: every byte a
 * stream's content function defines is checked at its offset on arrival, so
 * loss in the middle, duplication and corruption all show as a mismatch, and
 * a stream either delivers exactly what its writer was told was written or
 * reports a reset.
 */
import type { Duplex } from 'node:stream';

/** Byte `i` of stream `id`: position-dependent, so a repeated or skipped run never matches. */
export function streamByte(id: number, i: number): number {
  const x = Math.imul((i ^ (i >>> 11)) + id * 0x632be5ab, 0x9e3779b1);
  return (x ^ (x >>> 15)) >>> 24;
}

/** `len` bytes of stream `id` starting at offset `at`. */
export function streamBytes(id: number, at: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let k = 0; k < len; k++) b[k] = streamByte(id, at + k);
  return b;
}

/** What became of one checked stream. */
export interface StreamOutcome {
  /** Bytes whose write() callback reported success (the API said: written). */
  written: number;
  /** Bytes that arrived, in order. */
  received: number;
  /** Arrived bytes that differ from the content at their offset (loss, duplication, corruption). */
  mismatched: number;
  /** Either end reported an error (ECONNRESET, ...). A close with neither this nor `ended` is a silent truncation. */
  reset: boolean;
  /** The reader saw the writer's end() (the whole stream arrived). */
  ended: boolean;
}

/**
 * True when the outcome keeps the rule: nothing corrupt, nothing beyond what
 * was written, and either every written byte arrived (exactly once: checked
 * by offset) or the connection reported a reset.
 */
export function streamOutcomeOk(o: StreamOutcome): boolean {
  return o.mismatched === 0 && (o.reset || (o.ended && o.received === o.written));
}

/**
 * One stream from `writer` to `reader` (two ends of one connection): writes
 * `total` bytes of stream `id` in chunks of up to `maxChunk` with
 * backpressure, then end(); the reader checks every byte. Resolves when both
 * ends have closed, whatever happened to the connection.
 */
export function checkedStream(id: number, writer: Duplex, reader: Duplex, total: number, maxChunk: number, rand: () => number): Promise<StreamOutcome> {
  const o: StreamOutcome = { written: 0, received: 0, mismatched: 0, reset: false, ended: false };
  const closed = (s: Duplex): Promise<void> =>
    new Promise((resolve) => {
      if (s.destroyed && s.closed) resolve();
      else s.once('close', () => resolve());
    });
  const onError = (): void => void (o.reset = true);
  writer.on('error', onError);
  reader.on('error', onError);
  reader.on('data', (d: Buffer) => {
    for (let k = 0; k < d.length; k++) if (d[k] !== streamByte(id, o.received + k)) o.mismatched++;
    o.received += d.length;
  });
  reader.on('end', () => {
    o.ended = true;
    reader.end();
  });
  const write = async (): Promise<void> => {
    let at = 0;
    while (at < total && !writer.destroyed) {
      const len = Math.min(total - at, 1 + Math.floor(rand() * maxChunk));
      const ok = writer.write(streamBytes(id, at, len), (e) => {
        if (e === null || e === undefined) o.written += len;
      });
      at += len;
      if (!ok) await new Promise<void>((resolve) => {
        const go = (): void => {
          writer.off('drain', go);
          writer.off('close', go);
          resolve();
        };
        writer.on('drain', go);
        writer.on('close', go);
      });
    }
    if (!writer.destroyed) writer.end();
  };
  writer.resume(); // the reader's end() must reach the writer for the connection to close
  return Promise.all([write(), closed(writer), closed(reader)]).then(() => o);
}
