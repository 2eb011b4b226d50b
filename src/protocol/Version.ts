/**
 * The versions a Neuron announces: its own (the package's, checked against package.json by a test) and the
 * version of the wire contract it speaks (PROTOCOL.md), in its agent card (`careagent.protocol_version`) and its
 * mDNS TXT record (`ver`).
 */

/** The Neuron's version (package.json `version`). */
export const NEURON_VERSION = "0.1.0"

/** The version of the CareAgent wire contract: the handshake of section 2 and the ends of section 8. */
export const PROTOCOL_VERSION = "1.0"

/** The handshake URL of a Neuron's public URL (`https://host` → `wss://host/ws/handshake`). */
export const handshakeEndpoint = (publicUrl: string): string => {
  const url = new URL(publicUrl)
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:"
  url.pathname = url.pathname.replace(/\/+$/, "") + "/ws/handshake"
  return url.toString()
}
