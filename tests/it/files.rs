//! A real HTTP server on a loopback port that serves test media.

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Path;
use poem::{Response, Route, get, handler};

/// Bytes of the test image (`/image.png`): a PNG header and padding.
pub fn image_bytes() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.resize(4_321, 7);
    v
}

#[handler]
fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "image.png" => Response::builder()
            .content_type("image/png")
            .body(image_bytes()),
        "clip.mp4" => Response::builder()
            .content_type("video/mp4")
            .body(vec![1u8; 2_000]),
        "big.bin" => Response::builder()
            .content_type("application/octet-stream")
            .body(vec![0u8; 100_000]),
        _ => Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .body("missing"),
    }
}

/// Serves `/files/<name>`; returns the base URL. Runs until the test ends.
pub async fn serve() -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(
        poem::Server::new_with_acceptor(acceptor).run(Route::new().at("/files/:name", get(file))),
    );
    format!("http://{addr}/files")
}
