/**
 * What the parts of `pnpm bench handshake` share: the organization and provider the tokens name, and the
 * messages passed between the bench process and its children. No Effect here: the baseline imports it.
 */

/** The organization of the Neuron under test (a valid NPI). */
export const ORG = "1234567893"
/** The one provider the Neuron serves (a valid NPI). */
export const PROVIDER = "1558598797"
/** The handshake path. */
export const PATH = "/ws/handshake"

/** CPU time of a process, µs (process.cpuUsage()). */
export interface Cpu {
  readonly user: number
  readonly system: number
}

/** Memory of a server process, bytes. */
export interface Memory {
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly maxRss: number
}

/** The memory figures of this process; `gc` first when it is exposed. */
export const memory = (): Memory => {
  const m = process.memoryUsage()
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    maxRss: process.resourceUsage().maxRSS * 1024
  }
}

/** Result of a closed-loop round from the load process. */
export interface RoundResult {
  readonly ok: number
  readonly errors: number
  readonly firstError: string | undefined
  readonly created: number
  readonly existing: number
  readonly seconds: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  /** CPU of the load process per handshake, µs. */
  readonly loadCpuUs: number
  /** ms to `handshake.complete`, of each successful handshake. */
  readonly latencies: ReadonlyArray<number>
}
