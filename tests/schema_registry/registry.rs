//! A tiny Confluent-compatible schema registry served inside the test: GET
//! /schemas/ids/{id} from a map, with switches to simulate an outage.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the registry answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Schemas from the map; 404 with error code 40403 for other ids.
    Up,
    /// HTTP 500 to everything.
    Failing,
    /// Closes each connection without answering.
    Dropping,
    /// Answers nothing for a while, then closes (for client timeouts).
    Hanging,
    /// 404 without the registry's error body (a wrong base URL behind a proxy).
    NotARegistry,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    requests: HashMap<u32, usize>,
    authorization: Option<String>,
}

/// The registry's address and switches; the server thread lives as long as the test.
#[derive(Clone)]
pub(crate) struct TestRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Serves `schemas` (`{"<id>": <the body GET /schemas/ids/<id> answers>}`).
    pub(crate) fn serve(schemas: &serde_json::Value) -> Self {
        let bodies: HashMap<u32, String> = schemas
            .as_object()
            .expect("an object of schemas by id")
            .iter()
            .map(|(id, body)| (id.parse().expect("a numeric id"), body.to_string()))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State {
            mode: Some(Mode::Up),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (bodies, state) = (bodies.clone(), Arc::clone(&shared));
                // A thread per connection: a hanging answer must not hold up the next.
                std::thread::spawn(move || answer(stream, &bodies, &state));
            }
        });
        Self { addr, state }
    }

    /// The base URL to give `HttpSchemaRegistry`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches how the registry answers from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("lock").mode = Some(mode);
    }

    /// How many requests asked for schema `id` (whatever the answer).
    pub(crate) fn requests(&self, id: u32) -> usize {
        let state = self.state.lock().expect("lock");
        state.requests.get(&id).copied().unwrap_or(0)
    }

    /// The `Authorization` header of the last request, if it had one.
    pub(crate) fn last_authorization(&self) -> Option<String> {
        self.state.lock().expect("lock").authorization.clone()
    }
}

fn answer(mut stream: TcpStream, bodies: &HashMap<u32, String>, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    // The subject list (preflight asks for it): one subject per registered schema.
    let subjects = (path == "/subjects").then(|| {
        let names: Vec<String> = bodies
            .keys()
            .map(|id| format!("\"subject-{id}\""))
            .collect();
        format!("[{}]", names.join(","))
    });
    let id = Some(path)
        .and_then(|path| path.strip_prefix("/schemas/ids/"))
        .and_then(|id| id.parse::<u32>().ok());
    let mode = {
        let mut state = state.lock().expect("lock");
        if let Some(id) = id {
            *state.requests.entry(id).or_default() += 1;
        }
        state.authorization = authorization;
        state.mode.unwrap_or(Mode::Up)
    };
    let found = subjects.or_else(|| id.and_then(|id| bodies.get(&id)).cloned());
    let (status, body) = match (mode, found) {
        (Mode::Dropping, _) => return,
        (Mode::Hanging, _) => {
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        (Mode::Failing, _) => (
            "500 Internal Server Error",
            r#"{"error_code":50001}"#.into(),
        ),
        (Mode::NotARegistry, _) => ("404 Not Found", "<html>no such page</html>".into()),
        (Mode::Up, Some(body)) => ("200 OK", body),
        (Mode::Up, None) => (
            "404 Not Found",
            r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
