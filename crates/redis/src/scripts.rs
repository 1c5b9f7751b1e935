//! The Lua scripts every state change runs as (one atomic step each), with the shared
//! helpers of `lua/common.lua` prepended.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(include_str!("lua/common.lua"), include_str!($file)))
        });
    };
}

script!(PUBLISH, "lua/publish.lua");
script!(MOVER, "lua/mover.lua");
script!(DECLARE, "lua/declare.lua");
script!(RECEIVE, "lua/receive.lua");
script!(ACK, "lua/ack.lua");
script!(NACK, "lua/nack.lua");
script!(DEAD, "lua/dead.lua");
script!(REPLAY, "lua/replay.lua");
script!(PURGE, "lua/purge.lua");
script!(DELETE_GROUP, "lua/delete_group.lua");
