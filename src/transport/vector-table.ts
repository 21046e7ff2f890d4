import { InvalidArgumentError } from '../errors.js';
import { type NotifyArea, type WordRef, ring } from '../notify/notify-area.js';
import { PCI_NO_VECTOR } from '../spec/pci.js';

/** A vector's target word, with the view that rings it made once (not per interrupt). */
interface VectorTarget {
  ref: WordRef;
  i32: Int32Array;
}

/**
 * A device's MSI-X vectors and the shared word each one rings (the message
 * address a driver programs). Several queues of several devices may target
 * one word, so one driver thread can sleep on all of them. By default a
 * vector rings the device's own word of it. Routes are MSI-X table state
 * (PCI), which a virtio reset leaves alone.
 */
export class VectorTable {
  private readonly targets: VectorTarget[];

  constructor(private readonly notify: NotifyArea) {
    this.targets = Array.from({ length: notify.vectors }, (_, v) => ({ ref: { buffer: notify.spec.buffer, index: notify.vectorWord(v) }, i32: notify.i32 }));
  }

  /** Point vector `vector` at `target`. */
  route(vector: number, target: WordRef): void {
    this.check(vector);
    this.targets[vector] = { ref: target, i32: new Int32Array(target.buffer) };
  }

  /** The word vector `vector` rings. */
  target(vector: number): WordRef {
    this.check(vector);
    return this.targets[vector].ref;
  }

  /** The word `vector` rings, or null for NO_VECTOR (what a queue runner is given). */
  targetOrNull(vector: number): WordRef | null {
    return vector === PCI_NO_VECTOR ? null : this.targets[vector].ref;
  }

  /** Ring vector `vector`; NO_VECTOR rings nothing. */
  ring(vector: number): void {
    if (vector === PCI_NO_VECTOR) return;
    const t = this.targets[vector];
    ring(t.i32, t.ref.index);
  }

  /** @throws InvalidArgumentError for a vector the device does not have. */
  check(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.notify.vectors) {
      throw new InvalidArgumentError(`vector ${vector} out of range (device has ${this.notify.vectors})`);
    }
  }
}
