import { InvalidArgumentError } from '../errors.js';

/**
 * A device's configuration space (2.5): little-endian fields the device
 * updates and the driver reads, guarded by a generation counter the device
 * bumps on every change so a driver reading a multi-word field can retry
 * (4.1.4.3.1). Writes reach only the byte ranges the device model declares
 * writable.
 */
export class ConfigSpace {
  readonly bytes: Uint8Array;
  private gen = 0;

  constructor(
    size: number,
    private readonly writable: ReadonlyArray<readonly [offset: number, length: number]> = [],
  ) {
    this.bytes = new Uint8Array(size);
  }

  /** config_generation: a u8 that changes whenever the device changes the config. */
  get generation(): number {
    return this.gen;
  }

  /** Read a 1, 2 or 4 byte little-endian field. */
  read(offset: number, width: number): number {
    this.check(offset, width);
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + this.bytes[offset + i];
    return v;
  }

  /** A driver write: allowed only inside a writable range. */
  write(offset: number, width: number, value: number): void {
    this.check(offset, width);
    if (!this.writable.some(([o, l]) => offset >= o && offset + width <= o + l)) {
      throw new InvalidArgumentError(`config bytes [${offset}, ${offset + width}) are read-only`);
    }
    this.store(offset, width, value);
  }

  /** A device-side change of one or more fields: bumps the generation once. */
  update(change: (bytes: Uint8Array) => void): void {
    change(this.bytes);
    this.gen = (this.gen + 1) & 0xff;
  }

  private store(offset: number, width: number, value: number): void {
    for (let i = 0; i < width; i++) {
      this.bytes[offset + i] = value & 0xff;
      value = Math.floor(value / 256);
    }
  }

  private check(offset: number, width: number): void {
    if (!(width === 1 || width === 2 || width === 4) || !Number.isInteger(offset) || offset < 0 || offset + width > this.bytes.length) {
      throw new InvalidArgumentError(`config access of ${width} bytes at ${offset} is outside the ${this.bytes.length}-byte config space`);
    }
  }
}
