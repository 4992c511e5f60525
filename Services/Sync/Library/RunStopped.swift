/// The service is stopping: the run ends between two pages, as interrupted, resumable.
struct RunStopped: Error {}
