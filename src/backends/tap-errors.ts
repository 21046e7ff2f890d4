import { VirtioLabError } from '../errors.js';

/** /dev/net/tun is missing or cannot be opened (no tun driver, or a container without the device). */
export class TunUnavailableError extends VirtioLabError {
  constructor(detail: string) {
    super('TUN_UNAVAILABLE', `cannot open /dev/net/tun (${detail}): load the tun module (modprobe tun), or pass the device into the container (docker run --device /dev/net/tun)`);
  }
}

/** Creating or configuring an interface or a namespace needs CAP_NET_ADMIN. */
export class NetAdminRequiredError extends VirtioLabError {
  constructor(what: string) {
    super('NET_ADMIN_REQUIRED', `${what} needs CAP_NET_ADMIN: run as root, or give node the capability (setcap cap_net_admin+ep "$(command -v node)")`);
  }
}

/** An interface of that name exists already (in the host's namespace or the target one). */
export class InterfaceNameInUseError extends VirtioLabError {
  constructor(
    readonly ifname: string,
    where: string,
  ) {
    super('INTERFACE_NAME_IN_USE', `interface name "${ifname}" is in use ${where}: pick another name, or delete it (ip link del ${ifname})`);
  }
}

/** A network namespace the caller said exists does not. */
export class NetnsNotFoundError extends VirtioLabError {
  constructor(readonly netns: string) {
    super('NETNS_NOT_FOUND', `network namespace "${netns}" does not exist: create it first (ip netns add ${netns}) or let the port create it (create: true)`);
  }
}

/** iproute2's `ip` is not installed, or one of its commands failed. */
export class IpCommandError extends VirtioLabError {
  constructor(
    readonly argv: readonly string[],
    message: string,
  ) {
    super('IP_COMMAND_FAILED', message);
  }
}
