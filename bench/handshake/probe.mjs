/**
 * A probe loaded into the Neuron's process for `pnpm bench handshake` (`node --import <this file>`, before
 * dist/main.js): the product runs exactly as `pnpm start` runs it, and the bench asks this probe, over the IPC
 * channel the bench opened, for what only the process itself can see. Idle until asked (one IPC listener).
 * Messages: `cpu` (process.cpuUsage, all threads), `memory` (after a full GC when `gc`; needs --expose-gc),
 * `watch-start` / `watch-stop` (event-loop delay p99 / max and the longest GC pause in between),
 * `profile-start` / `profile-stop` (a V8 CPU profile written to `file`), `heap-start` / `heap-stop` (V8's sampling
 * heap profile of everything allocated in between, collected or not, written to `file`).
 * Plain JavaScript: loaded by plain node.
 */
import * as Fs from "node:fs"
import { Session } from "node:inspector/promises"
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"

if (process.send !== undefined) {
  process.channel?.unref()
  let loop
  let gcs
  let longestGc = 0
  let gcTotal = 0
  let gcCount = 0
  let session
  const memory = () => {
    const m = process.memoryUsage()
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      maxRss: process.resourceUsage().maxRSS * 1024
    }
  }
  process.on("message", async (message) => {
    switch (message?.cmd) {
      case "cpu":
        return process.send({ probe: "cpu", ...process.cpuUsage() })
      case "memory":
        if (message.gc === true) globalThis.gc?.()
        return process.send({ probe: "memory", ...memory() })
      case "watch-start":
        loop = monitorEventLoopDelay({ resolution: 5 })
        longestGc = 0
        gcTotal = 0
        gcCount = 0
        gcs = new PerformanceObserver((list) => {
          for (const entry of list.getEntries()) {
            longestGc = Math.max(longestGc, entry.duration)
            gcTotal += entry.duration
            gcCount++
          }
        })
        gcs.observe({ entryTypes: ["gc"] })
        loop.enable()
        return process.send({ probe: "watch-start" })
      case "watch-stop":
        loop.disable()
        gcs.disconnect()
        return process.send({
          probe: "watch-stop",
          loopP99: loop.percentile(99) / 1e6,
          loopMax: loop.max / 1e6,
          longestGc,
          gcTotal,
          gcCount
        })
      case "profile-start":
        session = new Session()
        session.connect()
        await session.post("Profiler.enable")
        await session.post("Profiler.setSamplingInterval", { interval: message.interval ?? 1000 })
        await session.post("Profiler.start")
        return process.send({ probe: "profile-start" })
      case "heap-start":
        session = new Session()
        session.connect()
        await session.post("HeapProfiler.enable")
        await session.post("HeapProfiler.startSampling", {
          samplingInterval: message.interval ?? 4096,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true
        })
        return process.send({ probe: "heap-start" })
      case "heap-stop": {
        const { profile } = await session.post("HeapProfiler.stopSampling")
        Fs.writeFileSync(message.file, JSON.stringify(profile))
        session.disconnect()
        return process.send({ probe: "heap-stop" })
      }
      case "profile-stop": {
        const { profile } = await session.post("Profiler.stop")
        Fs.writeFileSync(message.file, JSON.stringify(profile))
        session.disconnect()
        return process.send({ probe: "profile-stop" })
      }
    }
  })
}
