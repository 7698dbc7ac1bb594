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

    /// `EVALSHA <sha> <#keys> <keys…>`; the caller appends the arguments.
    pub(crate) fn evalsha(&self, keys: &[String]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.hash()).arg(keys.len()).arg(keys);
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
