// The limiters the scenarios compare, by id, and their names in the tables and charts.
export const LIMITERS = ['bare', 'frl-memory', 'gcra-memory', 'frl-redis', 'frl-redis-pipe', 'gcra-redis', 'gcra-redis-pipe']
export const LABELS = {
  bare: 'bare Fastify',
  'frl-memory': '@fastify/rate-limit, memory',
  'gcra-memory': 'fastify-gcra, memory',
  'frl-redis': '@fastify/rate-limit, Redis',
  'frl-redis-pipe': '@fastify/rate-limit, Redis + auto-pipelining',
  'gcra-redis': 'fastify-gcra, Redis',
  'gcra-redis-pipe': 'fastify-gcra, Redis + auto-pipelining',
}
