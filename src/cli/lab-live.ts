import type { Lab } from '../lab/runtime/lab.js';
import type { LiveField } from './live-line.js';

/** 1234 -> "1.2k", 2500000 -> "2.5M": a rate short enough for a live line. */
export function shortRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(1)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

/**
 * The live figures of a running lab: frames per second each NIC's driver
 * sent and received, and each switch port took in and gave out, over the
 * time since the previous call. NICs are kept longest on a narrow terminal.
 */
export class LabRates {
  private readonly t0 = performance.now();
  private last = this.t0;
  private readonly previous = new Map<string, number>();

  constructor(private readonly lab: Lab) {}

  fields(): LiveField[] {
    const now = performance.now();
    const dt = (now - this.last) / 1000;
    this.last = now;
    const rate = (key: string, count: number): string => {
      const before = this.previous.get(key) ?? 0;
      this.previous.set(key, count);
      return shortRate(dt > 0 ? (count - before) / dt : 0);
    };
    const stats = this.lab.stats();
    const fields: LiveField[] = [{ text: `${((now - this.t0) / 1000).toFixed(0).padStart(4)} s`, keep: 3 }];
    for (const [name, nic] of Object.entries(stats.nics)) {
      const tx = nic.driver.reduce((n, d) => n + d.txPackets, 0);
      const rx = nic.driver.reduce((n, d) => n + d.rxPackets, 0);
      fields.push({ text: `${name} tx ${rate(`${name}.tx`, tx)} rx ${rate(`${name}.rx`, rx)}/s`, keep: 2 });
    }
    for (const [sw, s] of Object.entries(stats.switches)) {
      for (const p of s.ports) fields.push({ text: `${sw}/${p.name} in ${rate(`${sw}/${p.name}.in`, p.rxFrames)} out ${rate(`${sw}/${p.name}.out`, p.txFrames)}/s`, keep: 1 });
    }
    return fields;
  }
}
