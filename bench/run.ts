/**
 * `pnpm bench <name>`: runs one benchmark by name. Add an entry here for a new one.
 */
const benches: Record<string, string> = {
  axon: "./axon/main.ts",
  "axon-component": "./axon-component/main.ts",
  "axon-plans": "./axon/plans.ts",
  "axon-sweep": "./axon/sweepSplit.ts",
  lifecycle: "./lifecycle/index.ts",
  jitter: "./jitter/index.ts",
  handshake: "./handshake/main.ts",
  tracing: "./tracing/index.ts",
  "tracing-micro": "./tracing/micro.ts",
  herd: "./herd/main.ts",
  revocation: "./revocation/main.ts"
}

const name = process.argv[2]
const entry = name === undefined ? undefined : benches[name]
if (entry === undefined) {
  console.error(`usage: pnpm bench <name>   (one of: ${Object.keys(benches).join(", ")})`)
  process.exit(2)
}
process.argv.splice(2, 1)
await import(entry)
