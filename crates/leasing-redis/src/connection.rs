//! Connections: one server through a `ConnectionManager`, or a Redis Cluster.

use crate::config::RedisConfig;
use crate::error::{map_err, Op};
use crate::scripts::Lua;
use leasing_abstractions::Result;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult,
};

/// The connection of a [`Node`]: one server through a `ConnectionManager`, or a Redis
/// Cluster through redis-rs' cluster connection, which routes every command by the slot of
/// its first key and follows `MOVED`/`ASK`. Every lease script touches only the keys of one
/// name, which share a slot thanks to the `{name}` hash tag.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(crate) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    pub(crate) async fn query_pipe(
        &mut self,
        pipe: &Pipeline,
    ) -> RedisResult<Vec<RedisResult<bool>>> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }

    /// Loads `lua` where `key` lives: the one server, or the master of `key`'s slot (the
    /// node that answered `NOSCRIPT`), not every node, so one node being down does not stop
    /// the others from reloading.
    pub(crate) async fn load(&mut self, lua: &Lua, key: &str) -> RedisResult<()> {
        match self {
            Conn::Single(c) => lua.load_cmd().query_async::<String>(c).await.map(drop),
            Conn::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(lua.load_cmd(), to).await.map(drop)
            }
        }
    }

    /// What renewals are grouped by into one pipeline: nothing on one server (a single
    /// pipeline), the slot on a cluster (redis-rs routes a pipeline by one slot).
    pub(crate) fn batch_of(&self, key: &str) -> Option<Slot> {
        match self {
            Conn::Single(_) => None,
            Conn::Cluster(_) => Some(Slot::for_key(key)),
        }
    }
}

/// The connection settings for `url` with the configured credentials.
pub(crate) fn connection_info(
    config: &RedisConfig,
    url: &str,
    auth: Option<(String, String)>,
) -> Result<ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| map_err(e, Op::Connect, None))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    if let Some((user, token)) = auth {
        settings = settings.set_username(user).set_password(token);
    }
    Ok(info.set_redis_settings(settings))
}

/// Builds a redis-rs client for `url` with the configured credentials and TLS.
pub(crate) fn client(
    config: &RedisConfig,
    url: &str,
    auth: Option<(String, String)>,
) -> Result<Client> {
    let info = connection_info(config, url, auth)?;
    #[cfg(feature = "tls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(ca) = &config.ca_cert_pem {
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            };
            return Client::build_with_tls(info, certs).map_err(|e| map_err(e, Op::Connect, None));
        }
    }
    Client::open(info).map_err(|e| map_err(e, Op::Connect, None))
}
