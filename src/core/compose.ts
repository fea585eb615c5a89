/**
 * Middleware composition in the shape of Hono's `compose` (and koa-compose before it): each
 * middleware gets the context and a `next` that runs the rest; calling `next` twice is an error;
 * not calling it stops the chain there.
 */
import type { Middleware, Next } from "./plugin.ts";

export function compose<C>(middleware: readonly Middleware<C>[]): (ctx: C, last?: Next) => Promise<void> {
  return (ctx, last) => {
    let index = -1;
    const dispatch = async (i: number): Promise<void> => {
      if (i <= index) throw new Error("next() called multiple times");
      index = i;
      const fn = i < middleware.length ? middleware[i] : undefined;
      if (fn) await fn(ctx, () => dispatch(i + 1));
      else if (i === middleware.length && last) await last();
    };
    return dispatch(0);
  };
}
