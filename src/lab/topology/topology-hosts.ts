import { type DhcpLease, DhcpServer, type DhcpServerStats } from '../hosts/dhcp-server.js';
import { IpHost, type IpHostStats } from '../hosts/ip-host.js';
import { formatIpv4, parseIpv4 } from '../hosts/ipv4-address.js';
import type { Lab } from '../runtime/lab.js';
import { parseHostAddress } from '../hosts/ipv4-address.js';
import type { TopologyHost } from './topology-types.js';
import { TftpServer, type TftpServerStats } from '../hosts/tftp-server.js';

/** What a topology's IP host did: its own counters, and its TFTP and DHCP servers' when it runs them. */
export interface LabHostReport {
  /** Address / prefix length. */
  address: string;
  mac: string;
  ip: IpHostStats;
  tftp?: TftpServerStats;
  dhcp?: DhcpServerStats & { leases: DhcpLease[] };
}

/** The running hosts of a topology's lab. */
export interface LabHosts {
  stats(): Record<string, LabHostReport>;
  /** Stop every server and host (before the lab closes); stats() still answers after it. */
  close(): Promise<void>;
}

/** The default DHCP pool: 16 addresses from .15 of the host's subnet (QEMU's user network hands out .15 too), or from .100 when the host is among them. */
function defaultPoolStart(ip: string, prefixLength: number): string {
  const n = parseIpv4(ip, 'host address');
  const net = (n & ((0xffffffff << (32 - prefixLength)) >>> 0)) >>> 0;
  const at15 = net + 15;
  return formatIpv4(n >= at15 && n < at15 + 16 ? net + 100 : at15);
}

/**
 * Start the IP hosts a topology lists on the NICs buildLab() made for them
 * (after lab.start()): IpHost, then TftpServer and DhcpServer when asked for.
 * What was started is stopped again when a later one fails.
 */
export async function startLabHosts(lab: Lab, hosts: readonly TopologyHost[]): Promise<LabHosts> {
  const running: { name: string; address: string; host: IpHost; tftp?: TftpServer; dhcp?: DhcpServer }[] = [];
  let closing: Promise<void> | undefined;
  // Idempotent; the counters stay readable after it.
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const r of [...running].reverse()) {
        r.dhcp?.close();
        await r.tftp?.close();
        await r.host.close();
      }
    })());
  try {
    for (const h of hosts) {
      const a = parseHostAddress(h.address);
      if (a === undefined) throw new Error(`host "${h.name}": bad address ${h.address}`); // parseTopology checked it
      const host = new IpHost({ driver: lab.driver(h.name), mac: lab.mac(h.name), ip: a.ip, prefixLength: a.prefixLength });
      const r: (typeof running)[number] = { name: h.name, address: `${a.ip}/${a.prefixLength}`, host };
      running.push(r);
      host.start();
      if (h.tftpRoot !== undefined) {
        r.tftp = new TftpServer({ host, root: h.tftpRoot });
        r.tftp.start();
      }
      if (h.dhcp !== undefined) {
        const options = h.dhcp === true ? {} : h.dhcp;
        r.dhcp = new DhcpServer({ poolStart: defaultPoolStart(a.ip, a.prefixLength), ...options, host });
        r.dhcp.start();
      }
    }
  } catch (e) {
    await close();
    throw e;
  }
  return {
    stats: () =>
      Object.fromEntries(
        running.map((r) => [
          r.name,
          {
            address: r.address,
            mac: r.host.mac,
            ip: r.host.stats(),
            ...(r.tftp === undefined ? {} : { tftp: r.tftp.stats() }),
            ...(r.dhcp === undefined ? {} : { dhcp: { ...r.dhcp.stats(), leases: r.dhcp.leases() } }),
          },
        ]),
      ),
    close,
  };
}
