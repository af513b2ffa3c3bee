//! The id of the request a task serves: set by the fronts (REST `x-request-id`), read by the
//! data plane, which carries it across a forward to the namespace's primary (one trace).

tokio::task_local! {
    /// The id of the request being served by this task.
    pub static REQUEST_ID: String;
}

/// The current request id, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}
