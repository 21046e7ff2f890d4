import { InvalidArgumentError } from '../errors.js';

/** One learned address, as macTable() reports it. */
export interface MacEntry {
  mac: string;
  port: number;
  /** Milliseconds since a frame from this address was last seen. */
  ageMs: number;
}

const EMPTY = -1;

/**
 * A learning switch's forwarding database: MAC address -> port, with the
 * time each address was last seen. Open addressing with linear probing over
 * typed arrays (no object per entry, no allocation per lookup); the table is
 * at most half full, and deletion shifts later entries back so lookups never
 * need tombstones. A MAC is read straight from the frame as a 16-bit and a
 * 32-bit half.
 */
export class MacTable {
  /** Entries it holds at most; learning more is refused (and counted) until some age out. */
  readonly limit: number;
  /** Entries now. */
  size = 0;
  /** Addresses seen on a different port than the one learned (station moved). */
  moves = 0;
  /** Addresses not learned because the table was full. */
  refused = 0;
  private readonly mask: number;
  private readonly hi: Uint16Array;
  private readonly lo: Uint32Array;
  private readonly port: Int32Array;
  private readonly seen: Float64Array;

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1 || limit > 1 << 24) throw new InvalidArgumentError(`MAC table size ${limit} must be an integer in [1, 2^24]`);
    this.limit = limit;
    const slots = 1 << Math.ceil(Math.log2(2 * limit));
    this.mask = slots - 1;
    this.hi = new Uint16Array(slots);
    this.lo = new Uint32Array(slots);
    this.port = new Int32Array(slots).fill(EMPTY);
    this.seen = new Float64Array(slots);
  }

  /**
   * The port of the address at u8[at, at+6), or -1 when unknown or older
   * than `maxAgeMs` (an entry the next sweep will remove).
   */
  lookup(u8: Uint8Array, at: number, now: number, maxAgeMs: number): number {
    const i = this.find((u8[at] << 8) | u8[at + 1], macLo(u8, at));
    if (i < 0 || now - this.seen[i] > maxAgeMs) return -1;
    return this.port[i];
  }

  /** The address at u8[at, at+6) was seen on `port` at `now`. */
  learn(u8: Uint8Array, at: number, port: number, now: number): void {
    const hi = (u8[at] << 8) | u8[at + 1];
    const lo = macLo(u8, at);
    const mask = this.mask;
    for (let i = hash(hi, lo) & mask; ; i = (i + 1) & mask) {
      const p = this.port[i];
      if (p === EMPTY) {
        if (this.size >= this.limit) {
          this.refused++;
          return;
        }
        this.hi[i] = hi;
        this.lo[i] = lo;
        this.port[i] = port;
        this.seen[i] = now;
        this.size++;
        return;
      }
      if (this.lo[i] === lo && this.hi[i] === hi) {
        if (p !== port) {
          this.port[i] = port;
          this.moves++;
        }
        this.seen[i] = now;
        return;
      }
    }
  }

  /** Remove entries not seen for more than `maxAgeMs`; returns how many. */
  expire(now: number, maxAgeMs: number): number {
    let removed = 0;
    for (let i = 0; i <= this.mask; ) {
      if (this.port[i] !== EMPTY && now - this.seen[i] > maxAgeMs) {
        this.remove(i);
        removed++;
        // remove() may have shifted a later entry into slot i: look again.
      } else {
        i++;
      }
    }
    return removed;
  }

  /** Forget every entry on `port` (or all). */
  clear(port = -1): void {
    for (let i = 0; i <= this.mask; ) {
      if (this.port[i] !== EMPTY && (port < 0 || this.port[i] === port)) this.remove(i);
      else i++;
    }
  }

  /** A snapshot of every entry (allocates: for control calls, not the data path). */
  entries(now: number): MacEntry[] {
    const out: MacEntry[] = [];
    for (let i = 0; i <= this.mask; i++) {
      if (this.port[i] === EMPTY) continue;
      const b = [this.hi[i] >>> 8, this.hi[i] & 0xff, this.lo[i] >>> 24, (this.lo[i] >>> 16) & 0xff, (this.lo[i] >>> 8) & 0xff, this.lo[i] & 0xff];
      out.push({ mac: b.map((x) => x.toString(16).padStart(2, '0')).join(':'), port: this.port[i], ageMs: Math.max(0, now - this.seen[i]) });
    }
    return out.sort((x, y) => (x.mac < y.mac ? -1 : 1));
  }

  private find(hi: number, lo: number): number {
    const mask = this.mask;
    for (let i = hash(hi, lo) & mask; ; i = (i + 1) & mask) {
      if (this.port[i] === EMPTY) return -1;
      if (this.lo[i] === lo && this.hi[i] === hi) return i;
    }
  }

  /** Empty slot i, shifting back the entries of its probe run that would no longer be found. */
  private remove(i: number): void {
    const mask = this.mask;
    let hole = i;
    for (let j = (i + 1) & mask; this.port[j] !== EMPTY; j = (j + 1) & mask) {
      const home = hash(this.hi[j], this.lo[j]) & mask;
      // Entry j stays when its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.hi[hole] = this.hi[j];
      this.lo[hole] = this.lo[j];
      this.port[hole] = this.port[j];
      this.seen[hole] = this.seen[j];
      hole = j;
    }
    this.port[hole] = EMPTY;
    this.size--;
  }
}

const macLo = (u8: Uint8Array, at: number): number => ((u8[at + 2] << 24) | (u8[at + 3] << 16) | (u8[at + 4] << 8) | u8[at + 5]) >>> 0;

function hash(hi: number, lo: number): number {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}
