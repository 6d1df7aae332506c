-- Sluice schema, version 3: automated canary rollouts (control-plane/src/rollout/).
--
-- One row per rollout. The route's weight itself lives in the config (every step
-- is a normal revision whose author is `rollout:<id>`); this row is the
-- controller's memory, so a restarted control plane knows what it was doing.
-- `weight` is the canary percent the controller has decided on and
-- `applied_weight` the one it has committed: they differ only between writing
-- the decision and committing it (write-ahead), which is how a restart finishes
-- a half-made step instead of guessing. `version` makes every transition a
-- compare-and-set, so two replicas never both move one rollout.

CREATE TABLE rollouts (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  route           text NOT NULL,
  stable          text NOT NULL,
  canary          text NOT NULL,
  spec            jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
  state           text NOT NULL CHECK (state IN ('running', 'paused', 'succeeded', 'failed', 'aborted')),
  step            integer NOT NULL,
  weight          integer NOT NULL CHECK (weight BETWEEN 0 AND 100),
  applied_weight  integer NOT NULL CHECK (applied_weight BETWEEN 0 AND 100),
  -- Consecutive inconclusive judgements of the current step.
  holds           integer NOT NULL DEFAULT 0,
  reason          text,
  step_started_at timestamptz,
  -- Every judgement: verdict, reason and the numbers it was based on.
  decisions       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(decisions) = 'array'),
  -- Every weight the rollout committed, with the revision that carries it.
  changes         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(changes) = 'array'),
  created_by      text NOT NULL,
  version         integer NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);

-- One running or paused rollout per route, across every replica.
CREATE UNIQUE INDEX rollouts_one_active_per_route ON rollouts (route) WHERE state IN ('running', 'paused');
CREATE INDEX rollouts_route_idx ON rollouts (route, created_at DESC);

CREATE TRIGGER rollouts_touch_updated_at BEFORE UPDATE ON rollouts
  FOR EACH ROW EXECUTE FUNCTION sluice_touch_updated_at();
