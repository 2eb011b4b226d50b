/**
 * The registry's in-memory index of registrations, loaded from SQLite at start and kept in step with it.
 * The heartbeat hot path reads and writes only this (no SQL read, no per-request write); heartbeat timestamps
 * reach SQLite through a group commit (`takeDirty`), and the monitor's sweep is a scan of this index.
 * Plain mutable data on purpose: everything here is synchronous and runs on the one JavaScript thread.
 */

/** Status of a registration as stored. `deregistered` ones stay indexed so their own token answers 404. */
export type StoredStatus = "reachable" | "down" | "deregistered"

/** One registration. */
export interface NeuronEntry {
  readonly registrationId: string
  readonly seq: number
  organizationNpi: string
  organizationName: string
  organizationType: string
  endpointUrl: string
  intervalS: number
  /**
   * The SHA-256 of the bearer token as a latin1 string (one character per byte): the map key, and compared in
   * constant time as bytes. A string rather than a Buffer: one object less per neuron for the GC to trace.
   */
  tokenKey: string
  status: StoredStatus
  lastHeartbeatMs: number
  registeredAtMs: number
  /**
   * The last accepted heartbeat body, when its endpoint is `endpointUrl`: a neuron repeats it, so it need not be
   * parsed and decoded again.
   */
  lastBeatText: string | undefined
}

/** The map key for a token hash. */
export const tokenKeyOf = (tokenHash: Buffer): string => tokenHash.toString("latin1")

/** A status change found by a sweep. */
export interface Transition {
  readonly entry: NeuronEntry
  readonly from: StoredStatus
  readonly to: "down" | "deregistered"
  readonly missedBeats: number
}

/** Counts of live registrations. */
export interface Counts {
  readonly reachable: number
  readonly down: number
}

/** The index itself. */
export class NeuronIndex {
  private readonly byId = new Map<string, NeuronEntry>()
  /** token key -> registration id, for live registrations only (a rotated or retired token is unknown). */
  private readonly byTokenHash = new Map<string, string>()
  /** organization NPI -> its live registration. */
  private readonly liveByNpi = new Map<string, NeuronEntry>()
  /** heartbeat interval -> number of live registrations using it, for the sweep period. */
  private readonly intervals = new Map<number, number>()
  private readonly dirty = new Set<NeuronEntry>()
  private reachable = 0
  private down = 0

  get(registrationId: string): NeuronEntry | undefined {
    return this.byId.get(registrationId)
  }

  /** The live registration that owns this token hash, if any. */
  ownerOf(tokenHash: Buffer): string | undefined {
    return this.byTokenHash.get(tokenKeyOf(tokenHash))
  }

  liveByOrganization(npi: string): NeuronEntry | undefined {
    return this.liveByNpi.get(npi)
  }

  counts(): Counts {
    return { reachable: this.reachable, down: this.down }
  }

  /** The shortest heartbeat interval among live registrations, in seconds, if any. */
  shortestIntervalS(): number | undefined {
    let min: number | undefined
    for (const interval of this.intervals.keys()) if (min === undefined || interval < min) min = interval
    return min
  }

  /** Adds a registration (loaded or new), or replaces the indexed one with the same id. */
  put(entry: NeuronEntry): void {
    const previous = this.byId.get(entry.registrationId)
    if (previous !== undefined) this.unlink(previous)
    this.byId.set(entry.registrationId, entry)
    this.link(entry)
  }

  /** Changes a registration's status, keeping counts and lookups in step. */
  setStatus(entry: NeuronEntry, status: StoredStatus): void {
    if (entry.status === status) return
    if (entry.status !== "deregistered" && status !== "deregistered") {
      // reachable <-> down: only the counts change (a mass outage makes many of these at once).
      const delta = status === "reachable" ? 1 : -1
      this.reachable += delta
      this.down -= delta
      entry.status = status
      return
    }
    this.unlink(entry)
    entry.status = status
    this.link(entry)
  }

  /** Replaces a live registration's token (re-registration): the old token stops working at once. */
  setTokenHash(entry: NeuronEntry, tokenHash: Buffer): void {
    this.unlink(entry)
    entry.tokenKey = tokenKeyOf(tokenHash)
    this.link(entry)
  }

  setInterval(entry: NeuronEntry, intervalS: number): void {
    this.unlink(entry)
    entry.intervalS = intervalS
    this.link(entry)
  }

  /**
   * Records a heartbeat's time; it reaches SQLite with the next group commit. True when it is the first one
   * since the last `takeDirty` (a group commit is then due).
   */
  beat(entry: NeuronEntry, nowMs: number): boolean {
    entry.lastHeartbeatMs = nowMs
    const first = this.dirty.size === 0
    this.dirty.add(entry)
    return first
  }

  /** The registrations whose heartbeat time changed since the last call, as `[seq, ms]` pairs. */
  takeDirty(): Array<[number, number]> {
    const out: Array<[number, number]> = []
    for (const entry of this.dirty) out.push([entry.seq, entry.lastHeartbeatMs])
    this.dirty.clear()
    return out
  }

  /** Puts back the registrations of pairs that could not be written (they carry their newest time anyway). */
  restoreDirty(pairs: ReadonlyArray<[number, number]>): void {
    const wanted = new Set(pairs.map(([seq]) => seq))
    for (const entry of this.byId.values()) if (wanted.has(entry.seq)) this.dirty.add(entry)
  }

  /**
   * Finds and applies the transitions due at `nowMs`: older than 3 intervals -> deregistered, older than 2 ->
   * down. Each registration makes at most one transition per sweep, so each gets at most one alert.
   */
  sweep(nowMs: number): Array<Transition> {
    const transitions: Array<Transition> = []
    for (const entry of this.liveByNpi.values()) {
      const silentMs = nowMs - entry.lastHeartbeatMs
      const intervalMs = entry.intervalS * 1000
      if (silentMs <= 2 * intervalMs) continue
      const from = entry.status
      const to = silentMs > 3 * intervalMs ? "deregistered" : "down"
      if (to === from) continue
      transitions.push({ entry, from, to, missedBeats: Math.floor(silentMs / intervalMs) })
    }
    for (const t of transitions) this.setStatus(t.entry, t.to)
    return transitions
  }

  private link(entry: NeuronEntry): void {
    if (entry.status === "deregistered") return
    this.byTokenHash.set(entry.tokenKey, entry.registrationId)
    this.liveByNpi.set(entry.organizationNpi, entry)
    this.intervals.set(entry.intervalS, (this.intervals.get(entry.intervalS) ?? 0) + 1)
    if (entry.status === "reachable") this.reachable++
    else this.down++
  }

  private unlink(entry: NeuronEntry): void {
    if (entry.status === "deregistered") return
    this.byTokenHash.delete(entry.tokenKey)
    if (this.liveByNpi.get(entry.organizationNpi) === entry) this.liveByNpi.delete(entry.organizationNpi)
    const n = (this.intervals.get(entry.intervalS) ?? 1) - 1
    if (n === 0) this.intervals.delete(entry.intervalS)
    else this.intervals.set(entry.intervalS, n)
    if (entry.status === "reachable") this.reachable--
    else this.down--
  }
}
