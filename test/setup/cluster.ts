/**
 * A real 3-master Redis Cluster on loopback ports, for the tests that need one. Started
 * and stopped by the test file that uses it (it takes a few seconds).
 */
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { startRedis } from './redis.js'

async function isFree (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** A port whose cluster bus port (+10000) is free too. */
async function clusterPort (taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000)
    if (taken.has(port) || taken.has(port + 10_000)) continue
    if (await isFree(port) && await isFree(port + 10_000)) return port
  }
  throw new Error('no free port pair for a cluster node')
}

export interface TestCluster {
  ports: number[]
  /** Kill one master (SIGKILL), leaving its slots without a server. */
  kill: (index: number) => Promise<void>
  stop: () => Promise<void>
}

export async function startCluster (masters = 3): Promise<TestCluster> {
  const taken = new Set<number>()
  const nodes: Array<Awaited<ReturnType<typeof startRedis>>> = []
  try {
    for (let i = 0; i < masters; i++) {
      const port = await clusterPort(taken)
      taken.add(port)
      nodes.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'], port))
    }
    const ports = nodes.map(n => n.port)
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    const deadline = Date.now() + 20_000
    for (;;) {
      const ok = ports.every(p => spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes('cluster_state:ok'))
      if (ok) break
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return {
      ports,
      kill: async (index) => {
        const node = nodes[index]!
        const exited = new Promise(resolve => node.process.once('exit', resolve))
        node.process.kill('SIGKILL')
        await exited
      },
      stop: async () => { await Promise.all(nodes.map(n => n.stop())) },
    }
  } catch (error) {
    await Promise.all(nodes.map(n => n.stop()))
    throw error
  }
}
