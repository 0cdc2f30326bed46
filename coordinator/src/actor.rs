//! The `Coordinator` actor: owns the validator and runs one epoch per `RunEpoch` message, so
//! epochs never overlap; its message enum is its API.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::epoch::{EpochError, Validator};
use protocol::scoring::EpochReport;

/// Messages the coordinator understands.
pub enum CoordinatorMsg {
    /// Run (or resume) one epoch and reply with its report or the reason it could not run
    /// (which the service sorts into transient and permanent, `crate::failure`).
    RunEpoch(RpcReplyPort<Result<EpochReport, EpochError>>),
}

/// The coordinator actor.
pub struct Coordinator;

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = Validator;
    type Arguments = Validator;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        validator: Validator,
    ) -> Result<Validator, ActorProcessingErr> {
        Ok(validator)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: CoordinatorMsg,
        validator: &mut Validator,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CoordinatorMsg::RunEpoch(reply) => {
                let result = validator.run_epoch().await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
