import { Command } from 'ioredis';
import type { RedisClient } from './redis';

/**
 * A command a cluster did not run, to be sent again alone: a redirection (the node that
 * answered it did not run it; ioredis gives up after maxRedirections of them while two nodes
 * disagree during a resharding or failover), or ioredis' refusal to resend a batch whose keys
 * its slot map, updated by a MOVED, now puts on different nodes (it retries a batch only when
 * every command in it failed the same way or was a read, so a write in it had not run).
 */
const NOT_RUN =
  /^(MOVED|ASK) |^Too many Cluster redirections|^All keys in the pipeline should belong to the same slots allocation group/;

/** Resends of a command a cluster still redirected after ioredis followed it (50, 100, 150 ms apart). */
const RESENDS = 3;

type Arg = string | number | Buffer;

/**
 * One command through ioredis' auto-pipelining (one write for the commands of a turn), the
 * way every command on a cluster is sent here. ioredis retries an auto-pipelined batch after
 * MOVED/ASK only when every other command in it got the same error or was a read: a batch
 * mixing tenants of several slots (one moved by a resharding or failover, the others' commands
 * run) hands each MOVED to its caller, and a retried batch of reads fails whole once its keys
 * are on two nodes. Such a command did not run: it is sent again alone (sendAlone), which
 * follows the redirection. The quota store's, the ledger streams', the key cache's and the
 * failover watcher's commands go through here.
 * CI saw a tenant's first request fail with a MOVED from its rebuild's stream drain: ioredis'
 * command table names no key for XGROUP, so it routes `XGROUP CREATE <stream>` by the slot of
 * "CREATE", a fixed node, which answers MOVED for most streams.
 */
export async function sendPipelined(redis: RedisClient, command: string, args: Arg[]): Promise<unknown> {
  try {
    return await redis.call(command, ...args);
  } catch (e) {
    if (!redis.isCluster || !(e instanceof Error) || !NOT_RUN.test(e.message)) throw e;
    return sendAlone(redis, command, args);
  }
}

/**
 * One command written at once (not held for the turn's pipeline), routed by its first key on
 * a cluster, where ioredis follows MOVED/ASK for it (up to maxRedirections). A redirection
 * that still reaches here (two nodes that disagree for a moment), or ioredis' give-up, is
 * sent again after the slot map's refresh has had time, a few times: the node that answered
 * it did not run the command.
 */
export function sendAlone(redis: RedisClient, command: string, args: Arg[], attempt = 0): Promise<unknown> {
  const c = new Command(command, args, { replyEncoding: 'utf8' });
  void redis.sendCommand(c);
  if (!redis.isCluster) return c.promise;
  return c.promise.catch(async (e: unknown) => {
    if (attempt >= RESENDS || !(e instanceof Error) || !NOT_RUN.test(e.message)) throw e;
    await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    return sendAlone(redis, command, args, attempt + 1);
  });
}
