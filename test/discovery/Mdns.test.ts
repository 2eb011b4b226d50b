/**
 * PROTOCOL.md section 9, local discovery, tested with a real browser of the same library (`bonjour-service`).
 * Multicast never leaves this machine: the network test runs inside a private network namespace (`unshare --net`,
 * multicast on its loopback only), where the built Neuron advertises, is browsed and sends its goodbye on SIGTERM.
 * The advertising code is also tested, always, against the library's own in-process responder (one loopback
 * unicast socket that answers its own queries), which needs no multicast at all.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import { advertise, discover, instanceName, MdnsTransport, SERVICE_TYPE } from "../../src/discovery/Mdns.js"
import { freePort } from "../support/http.js"
import { waitUntil } from "../support/neuron.js"
import { build, root } from "../support/process.js"

const NAMESPACE_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"

/** Whether this machine can make a private network namespace with multicast on its loopback (root, iproute2). */
const namespaceAvailable = (): boolean =>
  ChildProcess.spawnSync("unshare", ["--net", "sh", "-c", NAMESPACE_SETUP], { stdio: "ignore" }).status === 0

const TXT = { npi: "1234567893", ver: "1.0", ep: "wss://neuron.riverside.test/ws/handshake" }

/** The in-process check: advertise, browse with the library's browser and with `discover`, withdraw, see "down". */
const inProcess = Effect.gen(function*() {
  const port = yield* freePort
  return yield* Effect.gen(function*() {
    const bonjour = yield* MdnsTransport
    const events: Array<
      { readonly event: string; readonly name: string; readonly txt: unknown; readonly port: number }
    > = []
    const browser = bonjour.find({ type: SERVICE_TYPE })
    browser.on("up", (s) => events.push({ event: "up", name: s.name, txt: s.txt, port: s.port }))
    browser.on("down", (s) => events.push({ event: "down", name: s.name, txt: s.txt, port: s.port }))
    yield* Effect.addFinalizer(() => Effect.sync(() => browser.stop()))

    const scope = yield* Scope.make()
    yield* advertise({ name: "Riverside Family Practice (1234567893)", port: 8700, txt: TXT }).pipe(
      Scope.extend(scope)
    )
    yield* waitUntil("the browser hears the Neuron", Effect.sync(() => events.some((e) => e.event === "up")))
    assert.deepStrictEqual(events[0], {
      event: "up",
      name: "Riverside Family Practice (1234567893)",
      txt: TXT,
      port: 8700
    })
    const found = yield* discover("300 millis")
    assert.deepStrictEqual(found.map((n) => [n.name, n.port, n.npi, n.ver, n.ep]), [
      ["Riverside Family Practice (1234567893)", 8700, TXT.npi, TXT.ver, TXT.ep]
    ])
    yield* Scope.close(scope, Exit.void)
    yield* waitUntil("the goodbye", Effect.sync(() => events.some((e) => e.event === "down")))
    assert.deepStrictEqual(yield* discover("300 millis"), [])
  }).pipe(
    // The library's responder on one loopback unicast socket: it answers its own queries, nothing is multicast.
    Effect.provide(MdnsTransport.layer({ multicast: false, ip: "127.0.0.1", port, bind: "127.0.0.1" }))
  )
})

describe("local discovery over mDNS (section 9)", () => {
  it.scopedLive(
    "advertising against the library's in-process responder: _careagent-neuron._tcp with TXT npi, ver, ep is heard by the library's browser and by discover; closing the scope sends the goodbye",
    () => inProcess
  )

  it.live(
    "NEURON_MDNS=true in a private network namespace: the built Neuron advertises _careagent-neuron._tcp (TXT npi, ver, ep; its port), discover and the built `neuron discover --json` list it, and SIGTERM sends the goodbye before it exits 0",
    () =>
      Effect.gen(function*() {
        if (!namespaceAvailable()) {
          // Said, not skipped: the advertising code is still tested against the in-process responder.
          process.stderr.write(
            "mDNS: this machine cannot run a private network namespace with multicast (unshare --net as root); " +
              "the advertising is tested against the library's in-process responder only\n"
          )
          return yield* Effect.scoped(inProcess)
        }
        yield* Effect.sync(build)
        const run = ChildProcess.spawnSync(
          "unshare",
          ["--net", "sh", "-c", `${NAMESPACE_SETUP} && exec node_modules/.bin/tsx test/discovery/mdnsScenario.ts`],
          { cwd: root, encoding: "utf8", timeout: 90_000 }
        )
        assert.strictEqual(run.status, 0, run.stderr)
        const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!)
        const name = "Riverside Family Practice (1234567893)"
        assert.isTrue(result.up, result.output)
        const up = result.seen.find((e: any) => e.event === "up")
        assert.deepStrictEqual([up.name, up.port, up.txt], [name, 8700, {
          npi: "1234567893",
          ver: "1.0",
          ep: "ws://127.0.0.1:8700/ws/handshake"
        }])
        assert.deepStrictEqual(result.discovered.map((n: any) => [n.name, n.npi, n.ep]), [
          [name, "1234567893", "ws://127.0.0.1:8700/ws/handshake"]
        ])
        // `neuron discover --json`, the built command in the same namespace, lists it too.
        assert.strictEqual(result.discoverCommand.code, 0, result.discoverCommand.stderr)
        assert.deepStrictEqual(
          JSON.parse(result.discoverCommand.stdout).neurons.map((n: any) => [n.name, n.npi, n.ep, n.port]),
          [[name, "1234567893", "ws://127.0.0.1:8700/ws/handshake", 8700]]
        )
        assert.isTrue(result.down, `no goodbye after SIGTERM: ${result.output}`)
        assert.strictEqual(result.exit, 0)
        assert.include(result.output, "mDNS advertisement withdrawn (goodbye sent)")
      }),
    120_000
  )

  it("an instance name is cut to one DNS label (63 bytes), on a character boundary", () => {
    assert.strictEqual(instanceName("Clinic"), "Clinic")
    const long = "Ä".repeat(40)
    assert.strictEqual(Buffer.byteLength(instanceName(long)), 62)
    assert.strictEqual(instanceName(long), "Ä".repeat(31))
  })
})
