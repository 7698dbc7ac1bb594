//! The lease scripts: Lua run by SHA (`EVALSHA`), loaded with `SCRIPT LOAD` after
//! `NOSCRIPT`.

use redis::{Cmd, Script};
use std::sync::LazyLock;

/// A lease script: run by SHA (`EVALSHA`), loaded with `SCRIPT LOAD` after `NOSCRIPT`.
pub(crate) struct Lua {
    script: Script,
    code: &'static str,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            script: Script::new(code),
            code,
        }
    }

    pub(crate) fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// `EVALSHA <sha> <#keys> <keys…>`; the caller appends the arguments. The command's
    /// buffers are sized for a lease script's call up front (no regrowth per argument).
    pub(crate) fn evalsha(&self, keys: &[&str]) -> Cmd {
        let mut cmd = Cmd::with_capacity(12, 384);
        cmd.arg("EVALSHA")
            .arg(self.hash())
            .arg(keys.len())
            .arg(keys);
        cmd
    }

    pub(crate) fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.code);
        cmd
    }
}

pub(crate) struct Scripts {
    pub(crate) acquire: Lua,
    /// `acquire` behind the in-script restart fence (cluster mode with `restart_fence`).
    pub(crate) acquire_fenced: Lua,
    pub(crate) renew: Lua,
    pub(crate) release: Lua,
    pub(crate) breaks: Lua,
    pub(crate) inspect: Lua,
    pub(crate) fence: Lua,
    pub(crate) promoted: Lua,
    /// The fenced resource's compare-then-write.
    pub(crate) fenced_write: Lua,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Lua::new(include_str!("scripts/acquire.lua")),
    acquire_fenced: Lua::new(concat!(
        include_str!("scripts/cluster_fence.lua"),
        include_str!("scripts/acquire.lua")
    )),
    renew: Lua::new(include_str!("scripts/renew.lua")),
    release: Lua::new(include_str!("scripts/release.lua")),
    breaks: Lua::new(include_str!("scripts/break.lua")),
    inspect: Lua::new(include_str!("scripts/inspect.lua")),
    fenced_write: Lua::new(include_str!("scripts/fenced_write.lua")),
    fence: Lua::new(include_str!("scripts/fence.lua")),
    promoted: Lua::new(include_str!("scripts/promoted.lua")),
});

#[cfg(test)]
mod tests {
    #[test]
    fn scripts_store_numbers_as_formatted_integers() {
        // Redis 7.2.0-7.2.4 (redis/redis#13113) turns whole Lua numbers that are multiples
        // of 1e8 into scientific notation when a script passes them to redis.call: every
        // number a script stores must go through string.format('%d', …).
        let code = include_str!("scripts/acquire.lua");
        let writes: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ");
        for bare in ["KEYS[2], token,", "'|' .. token ..", "'|' .. now_ms .."] {
            assert!(
                !writes.contains(bare),
                "acquire.lua stores a bare number: {bare}"
            );
        }
        assert!(writes.contains("string.format('%d', token)"));
        assert!(writes.contains("string.format('%d', now_ms)"));
        assert!(writes.contains("redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4], 'GET')"));
        assert!(writes.contains("redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4])"));
        // fence.lua stores its argument (a string) as it came.
        assert!(include_str!("scripts/fence.lua")
            .contains("redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])"));
        assert!(include_str!("scripts/promoted.lua").contains("string.format('%d', now)"));
        assert!(include_str!("scripts/cluster_fence.lua")
            .contains("replid .. '|' .. string.format('%d', fnow)"));
    }
}
