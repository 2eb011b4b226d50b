/**
 * Where a server's CPU goes, from a V8 CPU profile (`.cpuprofile`): self time grouped into a few buckets, so
 * that the Neuron and the baseline can be compared bucket by bucket (`BENCH_PROFILE=<folder>`).
 */
import * as Fs from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const SQLITE = "SQLite (statements, commits)"

/** The buckets, first match wins: on the sampled frame's function name and file, or for a native frame (no file),
 * on those of the nearest JavaScript frame that called it (so that `job.run()` of a verification is crypto). */
const BUCKETS: ReadonlyArray<readonly [string, (name: string, url: string) => boolean]> = [
  ["idle", (name) => name === "(idle)"],
  ["garbage collection", (name) => name === "(garbage collector)"],
  [
    "socket writes and reads (syscalls)",
    (name) => /^(writev|writeBuffer|writeBuffers|writeUtf8String|writeLatin1String|onStreamRead)$/.test(name)
  ],
  ["crypto (Ed25519, key import, hashes, random)", (_, url) => url.includes("internal/crypto")],
  [SQLITE, (_, url) => url.includes("sql-sqlite-node") || url.includes("better-sqlite3")],
  ["effect runtime (fibers, Schema, ...)", (_, url) => /\/node_modules\/effect\/|\/effect@/.test(url)],
  ["@effect/sql, @effect/platform", (_, url) => /@effect\/(sql|platform|experimental)/.test(url)],
  ["ws, node http/net/streams", (_, url) => url.includes("/ws/lib/") || url.startsWith("node:")],
  ["the server's own code", (_, url) => url.includes("/src/") || url.includes("/bench/")],
  ["other (native, program, ...)", () => true]
]

/** Microseconds of self time per bucket, divided by `per` (handshakes); idle left out. */
export const buckets = (file: string, per: number): Array<readonly [string, number]> => {
  const profile = JSON.parse(Fs.readFileSync(file, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const bucketOf = (id: number): string => {
    const node = byId.get(id)!
    const { functionName, url } = node.callFrame
    const direct = BUCKETS.find(([, test]) => test(functionName, url))![0]
    if (url !== "" || direct !== BUCKETS[BUCKETS.length - 1]![0]) return direct
    const up = parent.get(id)
    const inherited = up === undefined ? direct : bucketOf(up)
    // better-sqlite3's native statement methods, called from anywhere (the baseline calls them directly).
    return /^(get|all|run|exec)$/.test(functionName) && !inherited.startsWith("crypto") ? SQLITE : inherited
  }
  const totals = new Map<string, number>()
  profile.samples.forEach((id, i) => {
    const bucket = bucketOf(id)
    totals.set(bucket, (totals.get(bucket) ?? 0) + (profile.timeDeltas[i] ?? 0))
  })
  return BUCKETS.map(([name]) => [name, (totals.get(name) ?? 0) / per] as const).filter(([name]) => name !== "idle")
}

interface HeapNode {
  readonly selfSize: number
  readonly children?: ReadonlyArray<HeapNode>
}

/** Bytes allocated in a sampling heap profile (`.heapprofile`), all call sites together. */
export const heapBytes = (file: string): number => {
  const sum = (node: HeapNode): number => node.selfSize + (node.children ?? []).reduce((s, c) => s + sum(c), 0)
  return sum((JSON.parse(Fs.readFileSync(file, "utf8")) as { head: HeapNode }).head)
}
