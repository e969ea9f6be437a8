/**
 * A Redis Cluster for one `describe` block: started before its tests and stopped after
 * them; every client `connect()` makes is disconnected after its test (disconnect, not
 * quit: QUIT waits on every node, and a test may have killed one).
 */
import { Cluster, type ClusterOptions } from 'ioredis'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { startCluster, type TestCluster } from '../setup/cluster.js'

export interface ClusterFixture {
  /** The running cluster (after `beforeAll`). */
  readonly cluster: () => TestCluster
  /** A client of the cluster, closed after the test. */
  readonly connect: (options?: ClusterOptions) => Cluster
}

export function clusterFixture (masters = 3): ClusterFixture {
  let cluster: TestCluster | undefined
  const clients: Cluster[] = []
  beforeAll(async () => { cluster = await startCluster(masters) }, 60_000)
  afterAll(async () => { await cluster?.stop() })
  afterEach(() => { for (const c of clients.splice(0)) c.disconnect() })
  return {
    cluster: () => cluster!,
    connect: (options) => {
      const client = new Cluster(cluster!.ports.map(port => ({ host: '127.0.0.1', port })), options)
      clients.push(client)
      return client
    },
  }
}
