/** A remote VTEP of an uplink: configured, or learned from a packet's outer source address. */
export interface VxlanRemoteStats {
  host: string;
  port: number;
  learned: boolean;
  /** Inner frames received from it, and datagrams sent to it. */
  rxFrames: number;
  txFrames: number;
}

/** A learned inner MAC and the VTEP behind it. */
export interface VxlanFdbEntry {
  mac: string;
  /** "host:port" of the remote VTEP. */
  remote: string;
  /** Milliseconds since a packet from this MAC was last seen (to the second: the clock is read once per batch). */
  ageMs: number;
}

/** Counters of a VXLAN uplink. "rx" is UDP -> lab, "tx" lab -> UDP. */
export interface VxlanStats {
  vni: number;
  /** Bound address and port ("10.0.0.1:4789"; stays after close()). */
  local: string;
  /** Inner frames handed to the lab, and their bytes. */
  rxFrames: number;
  rxBytes: number;
  /** Datagrams sent (a flooded frame counts once per remote; a GSO frame as its segments) and their inner bytes. */
  txFrames: number;
  txBytes: number;
  /** Frames sent to every remote because their destination was broadcast, multicast or not learned. */
  flooded: number;
  /** Learned MACs now; MACs seen behind another VTEP than the one learned; MACs not learned (table full). */
  fdbEntries: number;
  fdbMoves: number;
  fdbRefused: number;
  /** Packets shorter than the VXLAN header plus an Ethernet header. */
  dropsShort: number;
  /** Packets without the I flag. */
  dropsBadFlags: number;
  /** Packets for another VNI. */
  dropsBadVni: number;
  /** Packets from an address not in `remotes` (restrictSources only), or from a new VTEP when the remote list is full. */
  dropsUnknownSource: number;
  /** Inner frames longer than the lab's channels carry. */
  dropsTooBig: number;
  /** Frames that found the lab's channel full (UDP has no back-pressure). */
  dropsFull: number;
  /** Packets received before the uplink was plugged in. */
  dropsNotAttached: number;
  /** Datagrams the kernel dropped before the uplink read them (its receive buffer was full; /proc/net/udp). */
  dropsKernel: number;
  /** Frames from the lab with nowhere to go: not learned, and no remotes configured. */
  dropsNoRemote: number;
  /** Frames from the lab whose virtio_net_hdr could not be turned into wire frames. */
  dropsOffload: number;
  /** Sends the socket refused (unreachable network, buffer errors). */
  sendErrors: number;
  remotes: VxlanRemoteStats[];
}
