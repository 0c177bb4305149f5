"""/api/v1/users: the tenant's users (`users:manage`)."""

from __future__ import annotations

from flask.views import MethodView

from ctxcloud import MAX_PAGE_SIZE, Blueprint, current_actor, page_and_size, requires
from ctxcloud.plugins.users import service
from ctxcloud.plugins.users.schemas import UserCreateSchema, UserSchema, UserUpdateSchema

blp = Blueprint(
    "users", __name__, url_prefix="/api/v1/users", description="The tenant's users and roles."
)

USER_ID_PARAM = {
    "in": "path",
    "name": "user_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The user's id",
    "example": "usr_q2m8x7c1n4b6z9aak5v3",
}


@blp.route("")
class Users(MethodView):
    @requires("users:manage")
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List users

        The tenant's users, oldest first.
        """
        items, total = service.list_users(
            current_actor().tenant_id, *page_and_size(pagination_parameters)
        )
        pagination_parameters.item_count = total
        return items

    @requires("users:manage")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create a user

        The role may grant no more than the caller holds (an admin cannot create an owner:
        403). A taken username is a 409; a weak password a 422; past the tenant's `max_users`
        quota, 403 `quota_exceeded`.
        """
        actor = current_actor()
        return service.create_user(
            actor.tenant_id, data["username"], data["password"], data["role"], actor=actor
        )


@blp.route("/<user_id>", parameters=[USER_ID_PARAM])
class UserItem(MethodView):
    @requires("users:manage")
    @blp.response(200, UserSchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, user_id):
        """Read a user

        The user's role and state; the password never leaves the service.
        """
        return service.get_user(current_actor().tenant_id, user_id)

    @requires("users:manage")
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(403, response="Forbidden")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(422, response="ValidationError")
    def patch(self, changes, user_id):
        """Change a user's role, disabled flag or password

        Never to a role above the caller's own, nor on a user above it (403). The last
        owner cannot be demoted or disabled (409). Disabling or a new password ends the
        user's logins at once.
        """
        actor = current_actor()
        return service.update_user(actor, actor.tenant_id, user_id, changes)

    @requires("users:manage")
    @blp.response(204)
    @blp.alt_response(403, response="Forbidden")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="Conflict")
    def delete(self, user_id):
        """Delete a user

        Their logins stop working at once; the last owner cannot be deleted (409).
        """
        actor = current_actor()
        service.delete_user(actor, actor.tenant_id, user_id)
