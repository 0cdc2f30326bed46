//! The proxies' supervisor: each [`RemoteWorker`] runs linked to a `ProxySupervisor`, which
//! restarts a proxy that exits (panics, fails in a handler or is stopped) after a backoff that
//! doubles per restart (0.5 s … 30 s). The scheduler reaches workers through an [`ActorSlot`],
//! so a restarted proxy takes the next job. Network failures never get this far: a proxy
//! reconnects by itself and reports a lost worker as a value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::remote::{RemoteArgs, RemoteWorker};
use crate::worker_actor::WorkerMsg;

/// The current actor of a worker; a supervisor swaps in the restarted one.
#[derive(Clone)]
pub struct ActorSlot(Arc<Mutex<ActorRef<WorkerMsg>>>);

impl ActorSlot {
    /// A slot holding `actor`.
    pub fn new(actor: ActorRef<WorkerMsg>) -> Self {
        Self(Arc::new(Mutex::new(actor)))
    }

    /// The actor to send to now.
    pub fn current(&self) -> ActorRef<WorkerMsg> {
        match self.0.lock() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, actor: ActorRef<WorkerMsg>) {
        if let Ok(mut a) = self.0.lock() {
            *a = actor;
        }
    }
}

/// Messages of the supervisor.
pub enum SupervisorMsg {
    /// Start a proxy with these arguments under supervision; reply with its slot.
    Supervise(Box<RemoteArgs>, RpcReplyPort<Result<ActorSlot, String>>),
    /// Restart the proxy formerly known by this id (sent to itself after the backoff).
    Restart(ActorId),
}

struct Child {
    args: RemoteArgs,
    slot: ActorSlot,
    restarts: u32,
}

/// The supervisor's state: children by their current actor id.
pub struct SupervisorState {
    children: HashMap<ActorId, Child>,
}

/// The supervisor actor.
pub struct ProxySupervisor;

impl Actor for ProxySupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ActorRef<SupervisorMsg>,
        _: (),
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Supervise(args, reply) => {
                let result =
                    Actor::spawn_linked(None, RemoteWorker, (*args).clone(), me.get_cell()).await;
                match result {
                    Ok((actor, _)) => {
                        let slot = ActorSlot::new(actor.clone());
                        state.children.insert(
                            actor.get_id(),
                            Child {
                                args: *args,
                                slot: slot.clone(),
                                restarts: 0,
                            },
                        );
                        let _ = reply.send(Ok(slot));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("proxy {}: {e}", args.id)));
                    }
                }
            }
            SupervisorMsg::Restart(old) => {
                let Some(mut child) = state.children.remove(&old) else {
                    return Ok(());
                };
                match Actor::spawn_linked(None, RemoteWorker, child.args.clone(), me.get_cell())
                    .await
                {
                    Ok((actor, _)) => {
                        tracing::warn!(worker = %child.args.id, restarts = child.restarts, "proxy restarted");
                        child.slot.replace(actor.clone());
                        state.children.insert(actor.get_id(), child);
                    }
                    Err(e) => {
                        tracing::error!(worker = %child.args.id, error = %e, "proxy restart failed; retrying");
                        let id = old;
                        child.restarts += 1;
                        state.children.insert(id, child);
                        let delay = backoff(state.children[&id].restarts);
                        me.send_after(delay, move || SupervisorMsg::Restart(id));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        // Any exit of a proxy while its supervisor runs is unexpected: shutting down stops the
        // supervisor first.
        let id = cell.get_id();
        if let Some(child) = state.children.get_mut(&id) {
            child.restarts += 1;
            let delay = backoff(child.restarts);
            tracing::error!(worker = %child.args.id, why, ?delay, "proxy exited; restarting");
            me.send_after(delay, move || SupervisorMsg::Restart(id));
        }
        Ok(())
    }
}

/// 0.5 s doubled per restart, at most 30 s.
fn backoff(restarts: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << restarts.min(6))).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_actor::WorkerStatus;
    use protocol::transport::{Identity, Timeouts};

    #[tokio::test]
    async fn a_proxy_that_exits_is_restarted_into_the_same_slot() {
        let identity = Identity::generate("c").expect("identity");
        let args = RemoteArgs {
            id: "w".into(),
            address: "127.0.0.1:9".parse().expect("addr"),
            fingerprint: "0".repeat(64),
            identity,
            timeouts: Timeouts {
                keep_alive: Duration::from_millis(200),
                idle: Duration::from_secs(1),
            },
            heartbeat: Duration::from_millis(100),
            worker_timeout: Duration::from_secs(1),
            expected_model: None,
            status: Arc::new(Mutex::new(WorkerStatus::default())),
        };
        let (supervisor, _) = Actor::spawn(None, ProxySupervisor, ())
            .await
            .expect("supervisor");
        let slot = ractor::call!(supervisor, SupervisorMsg::Supervise, Box::new(args))
            .expect("call")
            .expect("proxy");
        let first = slot.current().get_id();
        slot.current().stop(Some("test".into()));
        let started = std::time::Instant::now();
        while slot.current().get_id() == first {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the proxy was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status =
            ractor::call!(slot.current(), WorkerMsg::Status).expect("restarted proxy answers");
        assert_eq!(status.name, "w");
        supervisor.stop(None);
    }
}
