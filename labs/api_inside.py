"""The inside API: a session's layers, container-layer changes and container view;
its checkpoints, rewind and commit; the user's committed images (docs/inside.md).

Reads are for the owner and those allowed to watch (read-only); writes for the owner
alone; anyone else gets 404, as for every session API."""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from labs import selectors
from labs.exceptions import LabError
from labs.inside import services as inside
from labs.inside import transfer
from labs.api import api, body, field


def _viewable(request: HttpRequest, sid: str):
    return selectors.session_for_viewer(user=request.user, sid=sid)[0]


@api("GET")
def session_layers(request: HttpRequest, sid: str) -> HttpResponse:
    return JsonResponse(inside.session_inside(session=_viewable(request, sid), views=("layers",))["layers"])


@api("GET")
def session_changes(request: HttpRequest, sid: str) -> HttpResponse:
    return JsonResponse(inside.session_inside(session=_viewable(request, sid), views=("changes",))["changes"])


@api("GET")
def session_container(request: HttpRequest, sid: str) -> HttpResponse:
    return JsonResponse(inside.session_inside(session=_viewable(request, sid), views=("container",))["container"])


@api("GET")
def session_tree(request: HttpRequest, sid: str) -> HttpResponse:
    path = request.GET.get("path", "/")
    return JsonResponse(inside.session_tree(session=_viewable(request, sid), path=path))


@api("GET", "POST")
def session_checkpoints(request: HttpRequest, sid: str) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"checkpoints": inside.checkpoints_of(session=_viewable(request, sid))})
    session = selectors.session_of_user(user=request.user, sid=sid)
    body(request)  # {} today; malformed JSON is still an error
    return JsonResponse(inside.checkpoint_view(inside.checkpoint_create(session=session)), status=201)


@api("POST")
def session_rewind(request: HttpRequest, sid: str) -> HttpResponse:
    session = selectors.session_of_user(user=request.user, sid=sid)
    inside.session_rewind(session=session, checkpoint_id=field(body(request), "checkpoint"))
    return HttpResponse(status=202)


@api("POST")
def session_commit(request: HttpRequest, sid: str) -> HttpResponse:
    session = selectors.session_of_user(user=request.user, sid=sid)
    data = body(request)
    image = inside.image_commit(session=session, name=field(data, "name"), tag=data.get("tag") or "latest")
    return JsonResponse(inside.image_view(image), status=201)


@api("GET")
def images(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"images": inside.images_of(user=request.user)})


async def image_download(request: HttpRequest) -> HttpResponse:
    """GET ?image=<user>/<name>:<tag>&format=oci|docker: the owner's image as an archive,
    streamed from its host as it comes (an async view: no worker thread held meanwhile)."""
    if request.method != "GET":
        return JsonResponse({"error": f"method {request.method} not allowed"}, status=405)
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=401)
    fmt = request.GET.get("format", "oci")
    try:
        image = await sync_to_async(transfer.download_target)(user=user, ref=request.GET.get("image", ""), fmt=fmt)
        stream = await transfer.download_stream(image=image, fmt=fmt)
    except LabError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    response = StreamingHttpResponse(stream, content_type="application/x-tar")
    response["Content-Disposition"] = f'attachment; filename="{transfer.download_name(image, fmt)}"'
    response["Cache-Control"] = "private, no-store"
    return response
