"""/api/v1/projects: create, list, read, change and delete projects."""

from __future__ import annotations

from flask.views import MethodView

from ctxcloud import MAX_PAGE_SIZE, Blueprint, current_actor, page_and_size, requires
from ctxcloud.plugins.context import projects as service
from ctxcloud.plugins.context.project_schemas import (
    ProjectCreateSchema,
    ProjectSchema,
    ProjectUpdateSchema,
)

blp = Blueprint(
    "projects",
    __name__,
    url_prefix="/api/v1/projects",
    description="Projects: each holds one versioned context.",
)

PROJECT_PARAM = {
    "in": "path",
    "name": "project",
    "required": True,
    "schema": {"type": "string"},
    "description": "The project's id (`prj_...`) or its slug",
    "example": "handbook",
}


@blp.route("")
class Projects(MethodView):
    @requires("projects:read")
    @blp.response(200, ProjectSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List projects

        The tenant's projects, oldest first; a key restricted to some projects sees only those.
        """
        items, total = service.list_projects(current_actor(), *page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return items

    @requires("projects:write")
    @blp.arguments(ProjectCreateSchema)
    @blp.response(201, ProjectSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create a project

        The slug defaults to one derived from the name (made unique); an explicit slug that is
        taken is a 409. Past the tenant's `max_projects` quota: 403 `quota_exceeded`. A key
        restricted to some projects cannot create one (403 `forbidden`).
        """
        return service.create(current_actor(), data)


@blp.route("/<project>", parameters=[PROJECT_PARAM])
class ProjectItem(MethodView):
    @requires("projects:read")
    @blp.response(200, ProjectSchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, project):
        """Read a project

        By id or slug; a project of another tenant, or outside a restricted key's projects,
        is a 404.
        """
        return service.resolve(current_actor(), project)

    @requires("projects:write")
    @blp.arguments(ProjectUpdateSchema)
    @blp.response(200, ProjectSchema)
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(422, response="ValidationError")
    def patch(self, changes, project):
        """Change a project

        Name, slug, description and metadata; the id never changes.
        """
        return service.update(current_actor(), project, changes)

    @requires("projects:write")
    @blp.response(204)
    @blp.alt_response(404, response="NotFound")
    def delete(self, project):
        """Delete a project

        Deletes its whole context, every revision and every stored object.
        """
        service.delete(current_actor(), project)
